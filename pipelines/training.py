"""Training and eval as assets: per run recipe a `runs/<run>/checkpoint` asset (the same `train()` as
`imp-data train RUN`) and, for stage-2 runs, a `runs/<run>/metrics` asset (the same `evaluate_run()` as
`imp-data eval RUN`, over the benchmark folders laid out under DATA/eval).

A checkpoint depends on the index of the mix the run reads (the shards are complete once it exists)
and, for a stage 2 whose `model.init_projector` names another selected run, on that run's checkpoint.
Only stage 2 is evaluated: stage 1 trains the projector alone and answers no instructions.
The data root is the `DataRoot` resource's, not the run recipe's `data_root` (as `--data-root` does).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from imp_data.train.config import RunConfig, load_run
from pipelines.assets import mix_key
from pipelines.resources import DataRoot

ROOT = Path(__file__).resolve().parent.parent
DEMO_RUNS = (ROOT / "manifests" / "runs" / "tiny_stage1.yaml", ROOT / "manifests" / "runs" / "tiny_stage2.yaml")


def run_key(run: str, what: str) -> dg.AssetKey:
    return dg.AssetKey(["runs", run, what])


def selected_runs(env: str | None, *, demo: bool) -> list[Path]:
    """Run recipes from a comma-separated list (IMP_DATA_RUNS); unset: the tiny runs for the demo recipe,
    none otherwise; empty or `none`: none. Relative paths are taken from the current directory, else the repo.

    Example:
        >>> [p.name for p in selected_runs(None, demo=True)]
        ['tiny_stage1.yaml', 'tiny_stage2.yaml']
        >>> selected_runs("none", demo=True)
        []
    """
    if env is None:
        return list(DEMO_RUNS) if demo else []
    paths = [Path(p.strip()) for p in env.split(",") if p.strip() and p.strip().lower() != "none"]
    return [p.resolve() if p.is_absolute() or p.exists() else ROOT / p for p in paths]


def load_runs(paths: list[Path]) -> dict[str, tuple[Path, RunConfig]]:
    """{run name: (recipe path, config)}; two recipes with one name would write one run directory."""
    runs: dict[str, tuple[Path, RunConfig]] = {}
    for path in paths:
        cfg = load_run(path)
        if cfg.name in runs:
            raise ValueError(f"run name {cfg.name!r} is used by both {runs[cfg.name][0]} and {path}")
        runs[cfg.name] = (path, cfg)
    return runs


def run_assets(name: str, path: Path, cfg: RunConfig, names: set[str]) -> list[dg.AssetsDefinition]:
    deps = [mix_key(cfg.mix, "index")]
    if cfg.stage == 2 and cfg.model.init_projector in names:  # Imp's --pretrain_mm_mlp_adapter
        deps.append(run_key(cfg.model.init_projector, "checkpoint"))

    @dg.asset(key=run_key(name, "checkpoint"), deps=deps, group_name="runs", kinds={"pytorch"},
              description=f"Stage {cfg.stage} training of `{name}` on `{cfg.mix}` ({path.name}); "
              "weights + optimizer state + meta under DATA/runs/" + name,
              metadata={"recipe": str(path), "stage": cfg.stage, "mix": cfg.mix})
    def checkpoint(data_root: DataRoot) -> dg.MaterializeResult:
        from imp_data.storage.sync import local_data_root_for_training
        from imp_data.train.loop import train
        from imp_data.train.summary import summarize_run

        # a data root in object storage: the mix into its cache first
        local = local_data_root_for_training(data_root.path, data_root.cache or None, cfg.mix)
        s = summarize_run(train(path, data_root=str(local)))
        return dg.MaterializeResult(metadata={
            "final_loss": s["final_loss"], "steps": s["steps"], "samples_per_s": s["samples_per_s"],
            "tokens_per_s": s["tokens_per_s"], "padding_share": s["padding_share"], "eta_s": s["eta_s"],
            "packing": cfg.train.packing,
            "checkpoint": dg.MetadataValue.path(s["checkpoint"]), "log": dg.MetadataValue.path(s["log"])})

    if cfg.stage != 2:
        return [checkpoint]

    @dg.asset(key=run_key(name, "metrics"), deps=[checkpoint], group_name="runs", kinds={"json"},
              description=f"`{name}` on every benchmark laid out under DATA/eval/<benchmark>/ (LLaVA's "
              "playground/data/eval): metrics.json, metrics.md, answers and upload files")
    def metrics(data_root: DataRoot) -> dg.MaterializeResult:
        import json

        from imp_data.eval.job import evaluate_run

        out = evaluate_run(path, data_root=str(data_root.open()[0]))
        results = json.loads(out.read_text())
        return dg.MaterializeResult(metadata={
            "metrics": dg.MetadataValue.md(out.with_name("metrics.md").read_text()),
            "scores": dg.MetadataValue.json({k: r.get("score") for k, r in results.items()}),
            "splits": len(results), "path": dg.MetadataValue.path(str(out))})

    return [checkpoint, metrics]


def training_definitions(paths: list[Path]) -> tuple[list[dg.AssetsDefinition], list]:
    """(assets, jobs) for these run recipes: `<run>_train_job` and, for stage 2, `<run>_eval_job`."""
    runs = load_runs(paths)
    assets, jobs = [], []
    for name, (path, cfg) in runs.items():
        assets += run_assets(name, path, cfg, set(runs))
        jobs.append(dg.define_asset_job(f"{name}_train_job", selection=[run_key(name, "checkpoint")],
                                        description=f"train `{name}` (stage {cfg.stage}) on `{cfg.mix}`"))
        if cfg.stage == 2:
            jobs.append(dg.define_asset_job(f"{name}_eval_job", selection=[run_key(name, "metrics")],
                                            description=f"evaluate `{name}` on the benchmarks under DATA/eval"))
    return assets, jobs
