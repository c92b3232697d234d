"""`imp-data demo`: the whole product on embedded data, end to end on a CPU in about a minute.

fixture mirror (every source in its native layout, wild cases included) -> build both demo mixes ->
tiny stage-1 and stage-2 training on the shards -> eval of the tiny model on fixture benchmarks.
"""

from __future__ import annotations

import time
from pathlib import Path

from imp_data.build import build
from imp_data.core.context import BuildContext
from imp_data.core.layout import Layout
from imp_data.core.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
DEMO_RECIPE = ROOT / "manifests" / "demo.yaml"
TINY_RUNS = (ROOT / "manifests" / "runs" / "tiny_stage1.yaml", ROOT / "manifests" / "runs" / "tiny_stage2.yaml")


def run_demo(data_root: Path, *, workers: int = 1, skip_train: bool = False, progress: bool = True) -> dict:
    """Run the demo under `data_root`; returns what each step produced."""
    from imp_data.fixtures import write_mirror

    t0 = time.time()
    out: dict = {}
    print(f"[demo] 1/4 fixture mirror -> {data_root / 'mirror'}")
    out["mirror"] = write_mirror(data_root / "mirror", scale=1, seed=0)
    print(f"[demo] 2/4 build {DEMO_RECIPE.name} -> {data_root / 'mixes'}")
    ctx = BuildContext(recipe=load_recipe(DEMO_RECIPE), data_root=data_root, workers=workers, progress=progress)
    result = build(ctx)
    out["mixes"] = result["mixes"]
    for mix, stats in result["mixes"].items():
        t = stats["totals"]
        print(f"[demo]   {mix}: {t['taken']} samples, {t['shards']} shards, rejected {t['rejected']}, "
              f"dropped {t['dropped']} -> {ctx.layout.report(mix)}")
    if skip_train:
        return out
    from imp_data.train.loop import train

    runs = []
    for i, run in enumerate(TINY_RUNS, start=3):
        print(f"[demo] {i}/4 train {run.name}")
        runs.append(train(run, data_root=str(data_root)))
    out["runs"] = runs
    from imp_data.eval.job import evaluate_run
    from imp_data.fixtures.eval_benchmarks import write_benchmark_fixtures

    print(f"[demo] eval of the tiny stage-2 model on fixture benchmarks -> {data_root / 'eval'}")
    write_benchmark_fixtures(Layout(data_root).benchmarks())
    out["metrics"] = evaluate_run(TINY_RUNS[1], data_root=str(data_root))
    print(f"[demo] done in {time.time() - t0:.0f}s")
    return out
