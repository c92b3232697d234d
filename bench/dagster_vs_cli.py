"""Dagster vs the CLI on the same recipe, side by side in one process: what "materialize this mix" in
the UI costs over `imp-data build`.

Writes a fixture mirror (scale N) once, then per mix, each on an empty data root: `imp-data build --mix`
and the mix's `<mix>_job` (the one-click job: one run, in process, all shard partitions, checks
included) against a DagsterInstance on disk (sqlite, like `dagster dev`'s). Prints both wall times and
the ratio as a Markdown table; the issue's bar is <= 2x.

    python bench/dagster_vs_cli.py [--scale 1] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imp_data.build import build  # noqa: E402
from imp_data.core.context import BuildContext  # noqa: E402
from imp_data.core.recipe import load_recipe  # noqa: E402
from imp_data.fixtures import write_mirror  # noqa: E402

DEMO = ROOT / "manifests" / "demo.yaml"


def fresh_root(tmp: Path, name: str, mirror: Path) -> Path:
    root = tmp / name
    root.mkdir()
    (root / "mirror").symlink_to(mirror, target_is_directory=True)
    return root


def cli_build(root: Path, workers: int, mix: str | None = None) -> float:
    ctx = BuildContext(recipe=load_recipe(DEMO), data_root=root, workers=workers, progress=False)
    start = time.perf_counter()
    build(ctx, mixes=[mix] if mix else None)
    return time.perf_counter() - start


def dagster_job(root: Path, home: Path, workers: int, mix: str) -> float:
    """`<mix>_job` as the UI launches it (the job's own tags: the whole partition range)."""
    import dagster as dg

    from pipelines.definitions import build_definitions

    os.environ["IMP_DATA_WORKERS"] = str(workers)
    job = build_definitions(DEMO, data_root=str(root), runs=[]).resolve_job_def(f"{mix}_job")
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        start = time.perf_counter()
        result = job.execute_in_process(instance=instance, tags=job.tags)
        seconds = time.perf_counter() - start
    assert result.success, mix
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=1, help="fixture mirror scale (1: the demo's)")
    parser.add_argument("--workers", type=int, default=1, help="processes per stage, both sides")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # dagster's beta/preview notices
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mirror = tmp / "mirror"
        write_mirror(mirror, scale=args.scale, seed=0)
        # imports and first-use caches, on both sides, so neither pays them in the timings
        cli_build(fresh_root(tmp, "warmup", mirror), args.workers)
        (tmp / "home_warmup").mkdir()
        dagster_job(fresh_root(tmp, "dagster_warmup", mirror), tmp / "home_warmup", args.workers,
                    next(iter(load_recipe(DEMO).mixes)))
        for mix in load_recipe(DEMO).mixes:  # each side from an empty data root: sources included
            cli = cli_build(fresh_root(tmp, f"cli_{mix}", mirror), args.workers, mix)
            (tmp / f"home_{mix}").mkdir()
            dagster = dagster_job(fresh_root(tmp, f"dagster_{mix}", mirror), tmp / f"home_{mix}", args.workers, mix)
            rows.append((mix, cli, dagster))
    print(f"scale {args.scale}, workers {args.workers}, {os.cpu_count()} CPUs")
    print("| mix | imp-data build --mix | Dagster <mix>_job | ratio |\n|---|---:|---:|---:|")
    for mix, cli, dagster in rows:
        print(f"| {mix} | {cli:.2f} s | {dagster:.2f} s | {dagster / cli:.2f}x |")

if __name__ == "__main__":
    main()
