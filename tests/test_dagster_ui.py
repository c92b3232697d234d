"""The Dagster UI for real: `dagster dev` (webserver + daemon) on 127.0.0.1 materializes the demo mix
through GraphQL (one launch of the mix's job: every asset, all shard partitions, one run); the GraphQL API
returns the asset graph (training and eval included), the check results, the report metadata and the
catalog's standard table metadata, per-partition shard counts and the sample preview;
headless Debian Chromium opens the report asset's page, finds the per-source table as an HTML table with
the library's cells, opens the report's Markdown with its four charts, and saves screenshots of both to
test-artifacts/. A second server, on a recipe variant with
max_reject_rate 0 (IMP_DATA_RECIPE), shows through GraphQL a failed blocking check with its reason and
the downstream asset not materialized.

Run: pytest tests/test_dagster_ui.py   (the browser part needs /usr/bin/chromium; .ci/run installs it)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from imp_data.core.recipe import load_recipe
from tests.conftest import DEMO_RECIPE, ROOT
from tests.dagster_dev import dagster_dev

MIX = "demo_stage2"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module")
def dagster_server(demo_build, tmp_path_factory):
    """The demo recipe's server, with MIX materialized through it by one launch of `<MIX>_job` with no
    tags or config of ours: the job itself covers every asset and every shard partition, in one run."""
    home, data = tmp_path_factory.mktemp("dagster_home"), tmp_path_factory.mktemp("ui_data")
    with dagster_dev(home, data, demo_build[0] / "mirror") as (base, gql):
        assert gql.run_job(f"{MIX}_job") == "SUCCESS", gql.log_tail()
        yield base, gql, data


@pytest.fixture(scope="module")
def strict_server(demo_build, tmp_path_factory):
    """A second server whose recipe (IMP_DATA_RECIPE) is the demo with max_reject_rate 0: the demo's wild
    cases are rejects, so MIX's blocking check_reject_rate fails. Its own instance and data root: the demo
    server's asset history stays clean. Only MIX's prepare job runs (sources -> selection -> renders)."""
    home, data = tmp_path_factory.mktemp("strict_home"), tmp_path_factory.mktemp("strict_data")
    recipe = yaml.safe_load(DEMO_RECIPE.read_text())
    recipe["max_reject_rate"] = 0.0
    for mix in recipe["mixes"].values():
        mix.pop("max_reject_rate", None)
    (home / "strict.yaml").write_text(yaml.safe_dump(recipe))
    with dagster_dev(home, data, demo_build[0] / "mirror", IMP_DATA_RECIPE=str(home / "strict.yaml")) as (base, gql):
        yield base, gql, data


def test_graphql_asset_graph_checks_and_report(dagster_server):
    base, gql, data = dagster_server
    nodes = gql("""{ assetNodes { assetKey { path } dependencyKeys { path } assetChecksOrError {
        ... on AssetChecks { checks { name blocking executionForLatestMaterialization { status
        evaluation { success } } } } } } }""")["assetNodes"]
    graph = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
    assert graph[f"{MIX}/report"] == {f"{MIX}/index"}
    sources = {k.split("/", 1)[1] for k in graph[f"{MIX}/selection"]}
    assert "llava_665k" in sources
    # finalizing reads every table of the mix: its asset depends on all of them, so a run orders it after them
    assert graph[f"{MIX}/index"] == {f"{MIX}/{a}" for a in ("shards", "plan", "selection", "renders", "removals")} | \
        {f"{kind}/{s}" for kind in ("normalized", "raw") for s in sources}
    assert graph["raw/llava_665k"] == {"published/llava_665k"}  # observed: an edited file shows up as stale
    assert graph["runs/tiny_stage2/checkpoint"] == {f"{MIX}/index", "runs/tiny_stage1/checkpoint"}
    assert graph["runs/tiny_stage2/metrics"] == {"runs/tiny_stage2/checkpoint"}
    checks = {c["name"]: c for n in nodes for c in (n["assetChecksOrError"].get("checks") or [])}
    for name in ("check_schema_valid", "check_counts_match_targets", "check_reject_rate", "check_index_matches_shards",
                 "check_no_contamination_above_policy", "check_taken_counts_match_targets"):
        assert checks[name]["blocking"]
        execution = checks[name]["executionForLatestMaterialization"]
        assert execution and execution["status"] == "SUCCEEDED" and execution["evaluation"]["success"], name
    report = gql("""query($k: AssetKeyInput!) { assetOrError(assetKey: $k) { ... on Asset {
        assetMaterializations(limit: 1) { metadataEntries { label ... on MarkdownMetadataEntry { mdStr } } } } } }""",
                 k={"path": [MIX, "report"]})["assetOrError"]["assetMaterializations"][0]["metadataEntries"]
    md = {e["label"]: e.get("mdStr") for e in report}
    assert md["per_source"].startswith("| source | target | read |")
    assert "data:image/png;base64," in md["report"], "charts are inlined so the UI shows them"
    assert (data / "mixes" / MIX / "report.md").is_file()


def test_graphql_catalog_metadata(dagster_server):
    """Every table asset carries `dagster/row_count` (the parquet's rows) and `dagster/column_schema`;
    every shard partition was materialized by the one run, each with its sample and byte counts, and the
    shards asset shows a preview of samples (text and a data-URI thumbnail)."""
    import pyarrow.parquet as pq

    _, gql, data = dagster_server
    query = """query($k: AssetKeyInput!) { assetOrError(assetKey: $k) { ... on Asset {
        assetMaterializations { runId partition metadataEntries { label
        ... on IntMetadataEntry { intValue } ... on MarkdownMetadataEntry { mdStr }
        ... on TableSchemaMetadataEntry { schema { columns { name type } } } } } } } }"""

    def entries(*path: str) -> list[dict]:
        return gql(query, k={"path": list(path)})["assetOrError"]["assetMaterializations"]

    mix = data / "mixes" / MIX
    tables = {(MIX, "selection"): mix / "selected.parquet", (MIX, "renders"): mix / "renders.parquet",
              (MIX, "plan"): mix / "plan.parquet", (MIX, "index"): mix / "index.parquet",
              ("normalized", "llava_665k"): data / "normalized" / "llava_665k.parquet"}
    for key, path in tables.items():
        (latest,) = entries(*key)
        meta = {e["label"]: e for e in latest["metadataEntries"]}
        footer = pq.ParquetFile(path)
        assert meta["dagster/row_count"]["intValue"] == footer.metadata.num_rows > 0, key
        columns = [c["name"] for c in meta["dagster/column_schema"]["schema"]["columns"]]
        assert columns == footer.schema_arrow.names, key
    shards = entries(MIX, "shards")
    n = load_recipe(DEMO_RECIPE).mixes[MIX].partitions
    assert sorted(m["partition"] for m in shards) == [f"{k:04d}" for k in range(n)]
    assert len({m["runId"] for m in shards}) == 1, "all partitions in one run"
    meta = {e["label"]: e for e in shards[0]["metadataEntries"]}
    index = pq.read_table(mix / "index.parquet", columns=["shard", "shard_size"]).to_pylist()
    assert meta["samples"]["intValue"] == len(index)
    assert meta["bytes"]["intValue"] == sum({r["shard"]: r["shard_size"] for r in index}.values())
    for k in range(n):
        mine = [r for r in index if r["shard"] % n == k]
        row = f"| {k:04d} | {len({r['shard'] for r in mine})} | {len(mine):,} | " \
              f"{sum({r['shard']: r['shard_size'] for r in mine}.values()):,} |"
        assert row in meta["by_partition"]["mdStr"]
    preview = meta["preview"]["mdStr"]
    first = pq.read_table(mix / "index.parquet", columns=["shard", "id"]).to_pylist()[0]
    assert first["shard"] == 0 and f"`{first['id']}`" in preview
    assert "data:image/jpeg;base64," in preview and "**human:**" in preview and "&lt;image&gt;" in preview


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (.ci/run installs it)")
def test_browser_shows_report_table(dagster_server):
    """The per_source metadata renders as an HTML table whose cells are the library's table, row by row."""
    from playwright.sync_api import sync_playwright

    from imp_data.audit.report import source_table
    from imp_data.audit.stats import load_stats

    base, _, data = dagster_server
    want = [[c.replace("**", "").strip() for c in line.strip("|").split("|")]  # bold renders as text
            for line in source_table(load_stats(data / "mixes" / MIX)).splitlines()
            if line.startswith("|") and not line.startswith("|--") and not line.startswith("|:")]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1200})
        page.goto(f"{base}/assets/{MIX}/report", wait_until="networkidle", timeout=60_000)
        # the rendered markdown table: the one whose header cells are the per-source columns
        table = page.locator("table:not(:has(table))").filter(has=page.locator("th", has_text="shortfall"))
        table.locator("td", has_text="laion_gpt4v").first.wait_for(timeout=30_000)
        skip = page.get_by_role("button", name="Skip")  # first-visit community dialog
        if skip.count():
            skip.first.click()
            page.get_by_text("Join the Dagster community").wait_for(state="hidden", timeout=10_000)
        table.first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "dagster_report_asset.png"), full_page=True)
        got = [[cell.strip() for cell in row.locator("th, td").all_inner_texts()]
               for row in table.first.locator("tr").all()]
        # the report itself opens from its metadata row: the charts render from their data URIs
        page.get_by_text("[Show Markdown]").first.click()
        charts = page.locator("img[src^='data:image/png;base64,']")
        charts.first.wait_for(timeout=30_000)
        widths = charts.evaluate_all("imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        charts.first.scroll_into_view_if_needed()
        page.wait_for_timeout(1500)  # the dialog fades in
        page.screenshot(path=str(ARTIFACTS / "dagster_report_charts.png"), full_page=True)
        browser.close()
    assert len(widths) == 4 and min(widths) >= 700, widths  # sources, reasons, images, text: full size
    assert got == want
    assert ["laion_gpt4v", "8"] == got[[r[0] for r in got].index("laion_gpt4v")][:2]
    assert (ARTIFACTS / "dagster_report_asset.png").stat().st_size > 10_000


def test_graphql_failed_blocking_check_says_why(strict_server):
    """A blocking check that fails shows, through GraphQL, as failed with the numbers behind it, and the
    asset downstream of it is not materialized: the run fails at the check and skips the plan."""
    _, gql, data = strict_server
    assert gql.run_job(f"{MIX}_prepare_job") == "FAILURE", gql.log_tail()
    run_id = gql.last_run_id
    node = gql("""query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) { ... on AssetNode {
        assetChecksOrError { ... on AssetChecks { checks { name blocking executionForLatestMaterialization {
        status runId evaluation { success description metadataEntries { label
        ... on FloatMetadataEntry { floatValue } ... on IntMetadataEntry { intValue } } } } } } } } } }""",
               k={"path": [MIX, "renders"]})["assetNodeOrError"]
    checks = {c["name"]: c for c in node["assetChecksOrError"]["checks"]}
    failed = checks["check_reject_rate"]
    execution = failed["executionForLatestMaterialization"]
    assert failed["blocking"] and execution["status"] == "FAILED" and execution["runId"] == run_id
    evaluation = execution["evaluation"]
    values = {e["label"]: e.get("floatValue", e.get("intValue")) for e in evaluation["metadataEntries"]}
    assert not evaluation["success"] and values["limit"] == 0.0 and values["reject_rate"] > 0
    assert values["rejected"] > 0 and "exceeds limit 0.00%" in evaluation["description"]
    plan = gql("""query($k: AssetKeyInput!) { assetOrError(assetKey: $k) { __typename
        ... on Asset { assetMaterializations { runId } } } }""", k={"path": [MIX, "plan"]})["assetOrError"]
    assert plan.get("assetMaterializations", []) == []
    steps = gql("query($id: ID!) { runOrError(runId: $id) { ... on Run { stepStats { stepKey status } } } }",
                id=run_id)["runOrError"]["stepStats"]
    status = {s["stepKey"]: s["status"] for s in steps}
    assert status[f"{MIX}__prepare"] == "FAILURE", status  # the step of renders and its checks, then plan
    assert not (data / "mixes" / MIX / "plan.parquet").exists()
