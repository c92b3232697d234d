"""Dagster code location, in process: definitions load and validate, materializing every demo asset
(partitions included) writes the same bytes as `imp-data build`, a failing blocking check stops
downstream assets, and a variant configured with the k8s executor loads.

Run: pytest tests/test_pipelines.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import dagster as dg
import yaml

from pipelines.definitions import build_definitions
from tests.conftest import DEMO_RECIPE, ROOT
from tests.test_build_e2e import outputs


def all_asset_defs(defs: dg.Definitions) -> list:
    return list(defs.assets or []) + list(defs.asset_checks or [])


def materialize_everything(defs: dg.Definitions, instance: dg.DagsterInstance, *, raise_on_error=True):
    """Unpartitioned assets first, then every shard partition, then index and report — like the UI."""
    items = all_asset_defs(defs)
    graph = defs.resolve_asset_graph()
    partitioned = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is not None]
    finals = [k for k in graph.get_all_asset_keys() if k.path[-1] in ("index", "report")]
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


def test_materialize_equals_cli_build(demo_build, tmp_path):
    cli_root, _ = demo_build
    root = tmp_path / "dagster"
    root.mkdir(parents=True, exist_ok=True)
    (root / "mirror").symlink_to(cli_root / "mirror", target_is_directory=True)
    defs = build_definitions(DEMO_RECIPE, data_root=str(root))
    with dg.DagsterInstance.ephemeral() as instance:
        results = materialize_everything(defs, instance)
        assert all(r.success for r in results)
        evaluations = [e for r in results for e in r.get_asset_check_evaluations()]
        assert evaluations and all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]
        report = results[-1].asset_materializations_for_node("demo_stage2__report")[0]
        assert "| source | target |" in report.metadata["per_source"].value
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
        failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
        assert {e.check_name for e in failed} >= {"check_reject_rate"}
        materialized = {"/".join(ev.event_specific_data.materialization.asset_key.path)
                        for ev in result.get_asset_materialization_events()}
        assert "demo_stage2/renders" in materialized and "demo_stage2/plan" not in materialized
        assert "demo_stage1/plan" in materialized  # the other mix is unaffected
    assert not (root / "mixes" / "demo_stage2" / "plan.parquet").exists()


def test_k8s_executor_variant_loads():
    from dagster_k8s import k8s_job_executor

    from pipelines.definitions_k8s import defs as k8s_defs

    for defs in (k8s_defs, build_definitions(DEMO_RECIPE, executor=k8s_job_executor.configured({"job_namespace": "imp"}))):
        job = defs.resolve_job_def("demo_stage2_shards_job")
        assert job.executor_def.name == "k8s"
        assert job.partitions_def is not None and len(job.partitions_def.get_partition_keys()) >= 1
