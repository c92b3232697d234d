"""The code location: `Definitions` assembled from a recipe (env IMP_DATA_RECIPE, default the demo)
and the run recipes trained on its mixes (env IMP_DATA_RUNS).

    dagster dev -m pipelines.definitions          # UI on http://127.0.0.1:3000
    IMP_DATA_EXECUTOR=in_process ...              # one process per run: faster start for small mixes
    IMP_DATA_RECIPE=manifests/imp_1m.yaml IMP_DATA_ROOT=/data dagster dev -m pipelines.definitions
    IMP_DATA_RUNS=manifests/runs/imp3b_stage1.yaml,manifests/runs/imp3b_stage2.yaml ...   # train/eval assets

IMP_DATA_RUNS is a comma-separated list of run recipes, each becoming `runs/<run>/checkpoint` (+ `metrics`
for stage 2) and `<run>_train_job` / `<run>_eval_job`. Unset, the demo recipe (manifests/demo.yaml) gets the
two tiny CPU runs (tiny_stage1, tiny_stage2, as `imp-data demo` trains) and any other recipe none, so a real
recipe never shows a training asset nobody asked for; set it empty (or `none`) for no runs at all.

Materializing a whole mix is one job, `<mix>_job` (Jobs -> demo_stage2_job -> Launch run): one run, one
process, every shard partition. Settings: see pipelines/resources.py (one environment variable each).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from imp_data.core.recipe import Recipe, load_recipe
from pipelines.assets import mix_assets, mix_key, shard_partitions, source_assets
from pipelines.resources import resources_from_env
from pipelines.training import selected_runs, training_definitions

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = ROOT / "manifests" / "demo.yaml"


RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def mix_jobs(recipe: Recipe, mix: str) -> list[dg.UnresolvedAssetJobDefinition]:
    """`<mix>_job` is the one click: every asset of the mix and the sources it reads, all shard partitions
    in the same run (its tags name the whole partition range, and the shards asset takes a range), in one
    process — the stages parallelize inside themselves (DataRoot.workers), so a process per step would
    only add start-up time. The three narrower jobs remain for rerunning one phase: prepare (sources ->
    plan), shards (one run per partition, or a ranged run), finalize (index -> report)."""
    keys = shard_partitions(recipe, mix).get_partition_keys()
    whole = dg.AssetSelection.assets(mix_key(mix, "report")).upstream()
    prepare = dg.AssetSelection.assets(mix_key(mix, "plan")).upstream()
    return [
        dg.define_asset_job(f"{mix}_job", selection=whole, executor_def=dg.in_process_executor,
                            tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
                            description=f"materialize all of `{mix}` in one run: sources, selection, renders, "
                            f"removals, plan, every shard partition, index and report"),
        dg.define_asset_job(f"{mix}_prepare_job", selection=prepare,
                            description=f"fetch, normalize, download, select, render, dedup and plan `{mix}`"),
        dg.define_asset_job(f"{mix}_shards_job", selection=dg.AssetSelection.assets(mix_key(mix, "shards")),
                            description=f"write the shards of `{mix}` (one run per partition, or a backfill)"),
        dg.define_asset_job(f"{mix}_finalize_job",
                            selection=dg.AssetSelection.assets(mix_key(mix, "index"), mix_key(mix, "report")),
                            description=f"index, rejects, stats and report of `{mix}`"),
    ]


def build_definitions(recipe_path: str | Path | None = None, *, data_root: str | None = None,
                      executor: dg.ExecutorDefinition | None = None,
                      runs: list[str | Path] | None = None) -> dg.Definitions:
    """Definitions for a recipe; `runs` are run recipe paths (default: IMP_DATA_RUNS, see the module doc)."""
    path = Path(recipe_path or os.environ.get("IMP_DATA_RECIPE", DEFAULT_RECIPE))
    recipe = load_recipe(path)
    if runs is None:
        runs = selected_runs(os.environ.get("IMP_DATA_RUNS"), demo=path.resolve() == DEFAULT_RECIPE.resolve())
    assets, jobs = [], []
    for source in dict.fromkeys(s for m in recipe.mixes.values() for s in m.sources):
        assets += source_assets(recipe, source)
    for mix in recipe.mixes:
        assets += mix_assets(recipe, mix)
        jobs += mix_jobs(recipe, mix)
    run_defs, run_jobs = training_definitions([Path(p) for p in runs])
    assets += run_defs
    jobs += run_jobs
    if executor is None:  # multiprocess uses every core; in_process starts faster (small mixes, tests)
        in_process = os.environ.get("IMP_DATA_EXECUTOR") == "in_process"
        executor = dg.in_process_executor if in_process else dg.multiprocess_executor
    return dg.Definitions(assets=assets, jobs=jobs,
                          resources=resources_from_env(data_root), executor=executor)


defs = build_definitions()
