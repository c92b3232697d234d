"""Dagster code location, in process: definitions load and validate; materializing every demo asset
(partitions included, then the tiny stage-1/stage-2 runs and the eval over fixture benchmarks) writes the
same bytes as `imp-data build` and the same checkpoint tensors and metrics as `imp-data train`/`eval`;
a failing blocking check stops downstream assets and says why in its metadata; the end-count check
catches a shortfall nothing explains; the run selection (IMP_DATA_RUNS); a k8s-executor variant loads.

Training is byte-deterministic on CPU (fixed seeds, one thread): the weight files of two runs are
identical, so the checkpoints are compared tensor by tensor. meta.json and log.jsonl are not compared:
they hold paths and timings.

Run: pytest tests/test_pipelines.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import dagster as dg
import pytest
import yaml

from imp_data.core.recipe import load_recipe
from pipelines.checks import check_taken_counts_match_targets
from pipelines.definitions import build_definitions
from pipelines.resources import DataRoot
from pipelines.training import DEMO_RUNS, selected_runs
from tests.conftest import DEMO_RECIPE, ROOT
from tests.test_build_e2e import outputs
from tests.train_support import demo_data_root, one_thread  # noqa: F401 (autouse fixture)


def all_asset_defs(defs: dg.Definitions) -> list:
    return list(defs.assets or []) + list(defs.asset_checks or [])


def materialize_everything(defs: dg.Definitions, instance: dg.DagsterInstance, *, raise_on_error=True):
    """Unpartitioned assets first, then every shard partition, then what follows the shards (index, report,
    training, eval) — like the UI's jobs."""
    items = all_asset_defs(defs)
    graph = defs.resolve_asset_graph()
    partitioned = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is not None]
    finals = list(dg.AssetSelection.assets(*partitioned).downstream(include_self=False).resolve(graph))
    before = [k for k in graph.get_all_asset_keys() if k not in partitioned and k not in finals]
    resources = dict(defs.resources or {})
    results = [dg.materialize(items, instance=instance, selection=before, raise_on_error=raise_on_error,
                              resources=resources)]
    if not results[0].success:
        return results
    for key in partitioned:
        for pk in graph.get(key).partitions_def.get_partition_keys():
            results.append(dg.materialize(items, instance=instance, selection=[key], partition_key=pk,
                                          resources=resources))
    results.append(dg.materialize(items, instance=instance, selection=finals, raise_on_error=raise_on_error,
                                  resources=resources))
    return results


def test_definitions_validate_command(tmp_path):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m", "pipelines.definitions"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def dagster_build(demo_build, tmp_path_factory):
    """(data root, results) of materializing every demo asset in process — mixes, tiny runs and eval."""
    from imp_data.fixtures.eval_benchmarks import write_benchmark_fixtures

    cli_root, _ = demo_build
    root = tmp_path_factory.mktemp("dagster")
    (root / "mirror").symlink_to(cli_root / "mirror", target_is_directory=True)
    write_benchmark_fixtures(root / "eval")
    defs = build_definitions(DEMO_RECIPE, data_root=str(root))
    with dg.DagsterInstance.ephemeral() as instance:
        results = materialize_everything(defs, instance)
    return root, results


def materialization(results, key: str) -> dg.AssetMaterialization:
    (event,) = [e for r in results for e in r.get_asset_materialization_events()
                if "/".join(e.event_specific_data.materialization.asset_key.path) == key]
    return event.event_specific_data.materialization


def evaluation(results, asset: str, check: str) -> dg.AssetCheckEvaluation:
    (found,) = [e for r in results for e in r.get_asset_check_evaluations()
                if e.check_name == check and "/".join(e.asset_key.path) == asset]
    return found


def test_materialize_equals_cli_build(demo_build, dagster_build):
    cli_root, _ = demo_build
    root, results = dagster_build
    assert all(r.success for r in results)
    evaluations = [e for r in results for e in r.get_asset_check_evaluations()]
    assert evaluations and all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]
    assert "| source | target |" in materialization(results, "demo_stage2/report").metadata["per_source"].value
    # the contamination check reads the plan: the demo's POPE matches are found, and none is left
    contamination = evaluation(results, "demo_stage2/plan", "check_no_contamination_above_policy").metadata
    assert {"ok", "matched", "left", "policy", "limit"} <= set(contamination)
    assert contamination["matched"].value > 0 and contamination["left"].value == 0
    # samples lost after selection are replaced from the seeded reserve (sharegpt4v's duplicate is); a
    # source whose reserve runs out ends short, checked at the end with its reasons (laion_gpt4v: two dead
    # links, one replacement left)
    ends = evaluation(results, "demo_stage2/index", "check_taken_counts_match_targets")
    assert ends.metadata["shortfall"].value == {"laion_gpt4v": 1}
    assert "| laion_gpt4v | 8 | 9 | 7 | 1 | yes | short: every eligible record was tried; lost image_missing 2 |" \
        in ends.metadata["per_source"].value
    want = {k: v for k, v in outputs(cli_root).items() if k.startswith("mixes/") and "/render/" not in k}
    got = {k: v for k, v in outputs(root).items() if k.startswith("mixes/") and "/render/" not in k}
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []


def test_failing_blocking_check_stops_downstream(demo_build, tmp_path):
    cli_root, _ = demo_build
    recipe = yaml.safe_load(DEMO_RECIPE.read_text())
    recipe["max_reject_rate"] = 0.0  # the demo's wild cases are rejects: this check must fail
    for mix in recipe["mixes"].values():
        mix.pop("max_reject_rate", None)
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump(recipe))
    root = tmp_path / "strict"
    root.mkdir(parents=True, exist_ok=True)
    (root / "mirror").symlink_to(cli_root / "mirror", target_is_directory=True)
    defs = build_definitions(path, data_root=str(root))
    with dg.DagsterInstance.ephemeral() as instance:
        (result,) = materialize_everything(defs, instance, raise_on_error=False)
        failed = {e.check_name: e for e in result.get_asset_check_evaluations() if not e.passed}
        assert set(failed) >= {"check_reject_rate"}
        why = failed["check_reject_rate"]  # the evaluation says why, with the numbers behind it
        assert why.metadata["reject_rate"].value > why.metadata["limit"].value == 0.0
        assert why.metadata["rejected"].value > 0 and "exceeds limit 0.00%" in why.description
        materialized = {"/".join(ev.event_specific_data.materialization.asset_key.path)
                        for ev in result.get_asset_materialization_events()}
        assert "demo_stage2/renders" in materialized and "demo_stage2/plan" not in materialized
        assert "demo_stage1/plan" in materialized  # the other mix is unaffected
    assert not (root / "mixes" / "demo_stage2" / "plan.parquet").exists()


def test_training_and_eval_assets_equal_cli(demo_build, dagster_build, tmp_path):
    """runs/<run>/checkpoint and runs/tiny_stage2/metrics give what `imp-data train`/`eval` give."""
    import torch
    from safetensors.torch import load_file

    from imp_data.cli import main
    from imp_data.fixtures.eval_benchmarks import write_benchmark_fixtures
    from imp_data.train.checkpoint import latest_checkpoint

    root, results = dagster_build
    cli = demo_data_root(demo_build[0], tmp_path)
    write_benchmark_fixtures(cli / "eval")
    for run in DEMO_RUNS:
        assert main(["train", str(run), "--data-root", str(cli)]) == 0
    assert main(["eval", str(DEMO_RUNS[1]), "--data-root", str(cli)]) == 0

    for run, steps in (("tiny_stage1", 18), ("tiny_stage2", 68)):
        meta = materialization(results, f"runs/{run}/checkpoint").metadata
        ours, theirs = latest_checkpoint(root / "runs" / run), latest_checkpoint(cli / "runs" / run)
        assert meta["checkpoint"].value == str(ours) and meta["steps"].value == steps
        assert meta["samples_per_s"].value > 0
        log = [json.loads(line) for line in (theirs.parent.parent / "log.jsonl").read_text().splitlines()]
        assert meta["final_loss"].value == log[-1]["loss"]
        assert ours.name == theirs.name
        a, b = (torch.load(c / "mm_projector.pt", weights_only=True) for c in (ours, theirs))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), run
        if run == "tiny_stage2":
            a, b = (load_file(str(c / "adapter" / "adapter_model.safetensors")) for c in (ours, theirs))
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = materialization(results, "runs/tiny_stage2/metrics").metadata
    ours, theirs = (r / "runs" / "tiny_stage2" / "eval" for r in (root, cli))
    # the same answers and scores; submission paths name each data root
    assert (ours / "metrics.json").read_text().replace(str(root), str(cli)) == (theirs / "metrics.json").read_text()
    assert metrics["metrics"].value == (theirs / "metrics.md").read_text()
    assert "| POPE |" in metrics["metrics"].value and metrics["scores"].value["pope"] is not None


def test_unexplained_shortfall_fails_end_count_check(dagster_build, tmp_path):
    """A mix whose shards hold fewer samples than selection and losses account for fails the check."""
    root, _ = dagster_build
    mix = tmp_path / "mixes" / "demo_stage2"
    mix.mkdir(parents=True)
    for path in (root / "mixes" / "demo_stage2").iterdir():
        if path.name != "stats.json":
            (mix / path.name).symlink_to(path)
    stats = json.loads((root / "mixes" / "demo_stage2" / "stats.json").read_text())
    stats["sources"]["docvqa"]["taken"] -= 1  # a sample lost with no reject or removal to show for it
    (mix / "stats.json").write_text(json.dumps(stats))
    result = check_taken_counts_match_targets(DataRoot(path=str(tmp_path)), load_recipe(DEMO_RECIPE), "demo_stage2")
    assert not result.passed
    assert "docvqa: UNEXPLAINED: taken 4, activated 5, lost 0" in result.description
    assert "| docvqa | 5 | 5 | 4 | 1 | NO |" in result.metadata["per_source"].value


def test_run_selection(monkeypatch):
    assert selected_runs(None, demo=True) == list(DEMO_RUNS) and selected_runs(None, demo=False) == []
    assert selected_runs("", demo=True) == [] and selected_runs("none", demo=True) == []
    assert selected_runs("manifests/runs/tiny_stage2.yaml", demo=False) == [ROOT / "manifests/runs/tiny_stage2.yaml"]
    monkeypatch.setenv("IMP_DATA_RUNS", "manifests/runs/tiny_stage1.yaml")
    jobs = {j.name for j in build_definitions(DEMO_RECIPE).jobs}
    assert "tiny_stage1_train_job" in jobs and "tiny_stage2_train_job" not in jobs
    monkeypatch.delenv("IMP_DATA_RUNS")
    defs = build_definitions(DEMO_RECIPE)
    assert {"tiny_stage1_train_job", "tiny_stage2_train_job", "tiny_stage2_eval_job"} <= {j.name for j in defs.jobs}
    graph = defs.resolve_asset_graph()
    stage2 = graph.get(dg.AssetKey(["runs", "tiny_stage2", "checkpoint"]))
    assert stage2.parent_keys == {dg.AssetKey(["demo_stage2", "index"]),
                                  dg.AssetKey(["runs", "tiny_stage1", "checkpoint"])}
    with pytest.raises(ValueError, match="tiny_stage1"):
        build_definitions(DEMO_RECIPE, runs=[DEMO_RUNS[0], DEMO_RUNS[0]])


def test_k8s_executor_variant_loads():
    from dagster_k8s import k8s_job_executor

    from pipelines.definitions_k8s import defs as k8s_defs

    for defs in (k8s_defs,
                 build_definitions(DEMO_RECIPE, executor=k8s_job_executor.configured({"job_namespace": "imp"}))):
        job = defs.resolve_job_def("demo_stage2_shards_job")
        assert job.executor_def.name == "k8s"
        assert job.partitions_def is not None and len(job.partitions_def.get_partition_keys()) >= 1


TABLE_ASSETS = ("selection", "renders", "plan", "index")


def test_table_assets_carry_catalog_metadata(dagster_build):
    """`dagster/row_count` and `dagster/column_schema` on every table asset equal the parquet it wrote;
    each shard partition's materialization counts its own samples and bytes."""
    import pyarrow.parquet as pq

    root, results = dagster_build
    files = {"selection": "selected.parquet", "renders": "renders.parquet", "plan": "plan.parquet",
             "index": "index.parquet"}
    recipe = yaml.safe_load(DEMO_RECIPE.read_text())
    keys = [(f"{m}/{a}", root / "mixes" / m / files[a]) for m in recipe["mixes"] for a in TABLE_ASSETS]
    keys += [(f"normalized/{s}", root / "normalized" / f"{s}.parquet")
             for s in dict.fromkeys(s for m in recipe["mixes"].values() for s in m["sources"])]
    for key, path in keys:
        meta = materialization(results, key).metadata
        footer = pq.ParquetFile(path)
        assert meta["dagster/row_count"].value == footer.metadata.num_rows, key
        assert [c.name for c in meta["dagster/column_schema"].value.columns] == footer.schema_arrow.names, key
    index = pq.read_table(root / "mixes" / "demo_stage2" / "index.parquet", columns=["shard", "shard_size"]).to_pylist()
    n = recipe["mixes"]["demo_stage2"]["partitions"]
    events = [e.event_specific_data.materialization for r in results for e in r.get_asset_materialization_events()
              if e.event_specific_data.materialization.asset_key.path == ["demo_stage2", "shards"]]
    assert sorted(m.partition for m in events) == [f"{k:04d}" for k in range(n)]
    for m in events:
        mine = [r for r in index if r["shard"] % n == int(m.partition)]
        assert m.metadata["samples"].value == len(mine) > 0
        assert m.metadata["bytes"].value == sum({r["shard"]: r["shard_size"] for r in mine}.values())
        assert "data:image/jpeg;base64," in m.metadata["preview"].value


def test_mix_job_is_one_run_over_everything():
    """`<mix>_job`: every asset the mix's report needs (sources included), in process, over the whole
    shard partition range by its own tags — one launch with nothing to fill in."""
    defs = build_definitions(DEMO_RECIPE, runs=[])
    graph = defs.resolve_asset_graph()
    job = defs.resolve_job_def("demo_stage2_job")
    want = {k for k in dg.AssetSelection.assets(dg.AssetKey(["demo_stage2", "report"])).upstream().resolve(graph)
            if graph.get(k).is_materializable}
    assert set(job.asset_layer.executable_asset_keys) == want
    assert {dg.AssetKey(["normalized", "llava_665k"]), dg.AssetKey(["demo_stage2", "shards"])} <= want
    keys = job.partitions_def.get_partition_keys()
    assert job.tags["dagster/asset_partition_range_start"] == keys[0]
    assert job.tags["dagster/asset_partition_range_end"] == keys[-1]
    assert job.executor_def.name == "in_process"


def test_resources_bind_one_env_var_per_setting(monkeypatch, tmp_path):
    """Each setting reads one variable, as a `dg.EnvVar` (resolved at run time, shown in the launchpad);
    the deprecated IMP_DATA_CACHE_DIR still sets the cache directory, with a warning."""
    from pipelines.resources import resources_from_env

    for name in ("IMP_DATA_ROOT", "IMP_DATA_WORKERS", "HF_ENDPOINT", "IMP_DATA_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    defaults = resources_from_env()
    assert defaults["data_root"].path == "data" and defaults["data_root"].workers == 1
    monkeypatch.setenv("IMP_DATA_ROOT", str(tmp_path / "imp"))
    monkeypatch.setenv("IMP_DATA_WORKERS", "3")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("IMP_DATA_CACHE_DIR", "/tmp/imp-cache")
    with pytest.warns(DeprecationWarning, match="IMP_DATA_CACHE_DIR"):
        bound = resources_from_env()
    monkeypatch.setenv("IMP_DATA_WORKERS", "5")  # EnvVar: read when a run initializes the resource
    with bound["data_root"].process_config_and_initialize_cm() as root:  # it holds the lock while in use
        assert (root.path, root.workers, root.cache) == (str(tmp_path / "imp"), 5, "/tmp/imp-cache")
    assert bound["fetch"].process_config_and_initialize().hf_endpoint == "http://127.0.0.1:9"
    assert resources_from_env("/elsewhere")["data_root"].path == "/elsewhere"


def test_mix_job_runs_a_step_per_chain():
    """Per source one step (fetch, normalize, download and the schema check), per mix prepare, shards and
    finalize: the checks run in their asset's step, none in a step of its own."""
    from dagster._core.execution.api import create_execution_plan

    defs = build_definitions(DEMO_RECIPE, runs=[])
    job = defs.resolve_job_def("demo_stage2_job")
    steps = {s.key for s in create_execution_plan(job, tags=job.tags).steps}
    sources = load_recipe(DEMO_RECIPE).mixes["demo_stage2"].sources
    assert steps == {f"source__{s}" for s in sources} | {f"demo_stage2__{w}" for w in ("prepare", "shards", "finalize")}
    assert len(job.asset_layer.asset_graph.asset_check_keys) == len(sources) + 5


def test_a_subset_of_a_step_runs_only_what_is_selected(dagster_build):
    """The UI can still materialize one asset of a step, or run only an asset's checks."""
    root, _ = dagster_build
    defs = build_definitions(DEMO_RECIPE, data_root=str(root), runs=[])
    report, normalized = dg.AssetKey(["demo_stage1", "report"]), dg.AssetKey(["normalized", "llava_pretrain"])
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(all_asset_defs(defs), instance=instance, selection=[report],
                                resources=dict(defs.resources))
        assert [e.asset_key for e in result.get_asset_materialization_events()] == [report]
        assert result.get_asset_check_evaluations() == []
        result = dg.materialize(all_asset_defs(defs), instance=instance, resources=dict(defs.resources),
                                selection=dg.AssetSelection.checks_for_assets(normalized))
        assert result.get_asset_materialization_events() == []
        (check,) = result.get_asset_check_evaluations()
        assert check.asset_key == normalized and check.check_name == "check_schema_valid" and check.passed


def test_only_a_failed_network_fetch_is_retried(demo_build, tmp_path, monkeypatch):
    """A fetch that failed on the network is retried (and then succeeds); a location that is wrong, or a
    normalize error, fails the step at once: waiting would not change them."""
    import pipelines.assets as assets
    from imp_data.core.errors import FetchError

    root = tmp_path / "root"
    root.mkdir()
    (root / "mirror").symlink_to(demo_build[0] / "mirror", target_is_directory=True)
    calls = {"fetch": 0, "normalize": 0}
    fetch = assets.stages.fetch_source
    failures = [FetchError("hub: ConnectError — check the network", transient=True), ConnectionError("reset")]

    def flaky_fetch(*args):
        calls["fetch"] += 1
        if failures:
            raise failures.pop(0)
        return fetch(*args)

    def missing_folder(*args):
        calls["fetch"] += 1
        raise FetchError("mirror/llava_pretrain: directory does not exist")

    def broken_normalize(*args):
        calls["normalize"] += 1
        raise ValueError("a bug in an adapter")

    monkeypatch.setattr(assets, "FETCH_DELAY_S", 0.0)
    defs = build_definitions(DEMO_RECIPE, data_root=str(root), runs=[])
    normalized = dg.AssetKey(["normalized", "llava_pretrain"])

    def run(instance) -> dg.ExecuteInProcessResult:
        return dg.materialize(all_asset_defs(defs), instance=instance, selection=[normalized],
                              resources=dict(defs.resources), raise_on_error=False)

    def retries(result) -> int:
        return [e.event_type_value for e in result.all_events].count("STEP_UP_FOR_RETRY")

    with dg.DagsterInstance.ephemeral() as instance:
        monkeypatch.setattr(assets.stages, "fetch_source", flaky_fetch)
        result = run(instance)
        assert result.success and calls["fetch"] == 3 and retries(result) == 2
        monkeypatch.setattr(assets.stages, "fetch_source", missing_folder)
        calls["fetch"] = 0
        result = run(instance)
        assert not result.success and calls["fetch"] == 1 and retries(result) == 0
        monkeypatch.setattr(assets.stages, "fetch_source", fetch)
        monkeypatch.setattr(assets.stages, "normalize_source", broken_normalize)
        result = run(instance)
        assert not result.success and calls["normalize"] == 1 and retries(result) == 0
