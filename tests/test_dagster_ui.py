"""The Dagster UI for real: `dagster dev` (webserver + daemon) on 127.0.0.1 materializes the demo mix
through GraphQL (prepare job, all shard partitions in one ranged run, finalize job); the GraphQL API
returns the asset graph, the check results and the report metadata; headless Debian Chromium opens the
report asset's page, finds the per-source table and saves a screenshot to test-artifacts/.

Run: pytest tests/test_dagster_ui.py   (the browser part needs /usr/bin/chromium; .ci/run installs it)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from imp_data.recipe import load_recipe
from tests.conftest import DEMO_RECIPE, ROOT

MIX = "demo_stage2"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GraphQL:
    def __init__(self, url: str):
        self.url = url

    def __call__(self, query: str, **variables) -> dict:
        reply = requests.post(self.url, json={"query": query, "variables": variables}, timeout=60)
        reply.raise_for_status()
        body = reply.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def run_job(self, job: str, tags: list[dict] | None = None, timeout: float = 300) -> str:
        launch = self("""mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
                ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
                      p={"selector": {"repositoryLocationName": "pipelines.definitions",
                                      "repositoryName": "__repository__", "jobName": job},
                         "runConfigData": {}, "executionMetadata": {"tags": tags or []}})["launchRun"]
        assert launch["__typename"] == "LaunchRunSuccess", launch
        run_id = launch["run"]["runId"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self("query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                          id=run_id)["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return status
            time.sleep(1)
        raise AssertionError(f"run {run_id} of {job} did not finish in {timeout}s")


@pytest.fixture(scope="module")
def dagster_server(demo_build, tmp_path_factory):
    cli_root, _ = demo_build
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    data = tmp_path_factory.mktemp("ui_data")
    data.mkdir(parents=True, exist_ok=True)
    (data / "mirror").symlink_to(cli_root / "mirror", target_is_directory=True)
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "IMP_DATA_ROOT": str(data), "IMP_DATA_PROGRESS": "0",
           "DAGSTER_DISABLE_TELEMETRY": "1",
           "IMP_DATA_EXECUTOR": "in_process"}
    log = open(home / "dev.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-m", "pipelines.definitions",
                             "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if requests.get(f"{base}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.time() < deadline, (home / "dev.log").read_text()[-3000:]
            time.sleep(0.5)
        gql = GraphQL(f"{base}/graphql")
        assert gql.run_job(f"{MIX}_prepare_job") == "SUCCESS", (home / "dev.log").read_text()[-3000:]
        n = load_recipe(DEMO_RECIPE).mixes[MIX].partitions
        ranged = [{"key": "dagster/asset_partition_range_start", "value": "0000"},
                  {"key": "dagster/asset_partition_range_end", "value": f"{n - 1:04d}"}]
        assert gql.run_job(f"{MIX}_shards_job", ranged) == "SUCCESS"
        assert gql.run_job(f"{MIX}_finalize_job") == "SUCCESS"
        yield base, gql, data
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


def test_graphql_asset_graph_checks_and_report(dagster_server):
    base, gql, data = dagster_server
    nodes = gql("""{ assetNodes { assetKey { path } dependencyKeys { path } assetChecksOrError {
        ... on AssetChecks { checks { name blocking executionForLatestMaterialization { status
        evaluation { success } } } } } } }""")["assetNodes"]
    graph = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
    assert graph[f"{MIX}/report"] == {f"{MIX}/index"}
    assert graph[f"{MIX}/index"] == {f"{MIX}/shards"}
    assert "normalized/llava_665k" in graph[f"{MIX}/selection"]
    checks = {c["name"]: c for n in nodes for c in (n["assetChecksOrError"].get("checks") or [])}
    for name in ("check_schema_valid", "check_counts_match_targets", "check_reject_rate", "check_index_matches_shards"):
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


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (.ci/run installs it)")
def test_browser_shows_report_table(dagster_server):
    from playwright.sync_api import sync_playwright

    base, _, _ = dagster_server
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1200})
        page.goto(f"{base}/assets/{MIX}/report", wait_until="networkidle", timeout=60_000)
        page.get_by_text("llava_665k").first.wait_for(timeout=30_000)
        skip = page.get_by_role("button", name="Skip")  # first-visit community dialog
        if skip.count():
            skip.first.click()
        page.screenshot(path=str(ARTIFACTS / "dagster_report_asset.png"), full_page=True)
        text = page.inner_text("body")
        browser.close()
    for needle in ("source", "target", "taken", "llava_665k", "dvqa", "allava"):
        assert needle in text, needle
    assert (ARTIFACTS / "dagster_report_asset.png").stat().st_size > 10_000
