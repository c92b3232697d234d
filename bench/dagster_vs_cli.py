"""Dagster vs the CLI on the same recipe, side by side in one process: what "materialize this mix" in
the UI costs over `imp-data build`.

Writes a fixture mirror (scale N) once, then per mix, each on an empty data root: `imp-data build --mix`
and the mix's `<mix>_job` (the one-click job: one run, in process, all shard partitions, checks
included). Dagster runs against instances on disk that live for the whole bench, as `dagster dev`'s
does while the UI is open, two of them side by side:
- `dagster.yaml`: this repository's instance config (SQLite, the event log's connections kept open:
  pipelines/instance_storage.py), what `dagster dev` gets when the README's setup is followed;
- `stock sqlite`: Dagster's default `storage: sqlite`, which reconnects for every event.
A warm-up run of each mix's job on each instance creates its tables, as the CLI's warm-up build pays
imports and first-use caches, so no side pays one-time start-up in the timings. Each measurement is
repeated (CLI, then each instance, in turn) and the medians are compared. Prints the medians and ratios
as a Markdown table; the issue's bar is <= 2x.

`--ui` measures end to end instead, as a user sees it: the `imp-data build --mix` command (a new process:
imports included) against launching `<mix>_job` on a running `dagster dev` (repository dagster.yaml) through
GraphQL, what the UI's Launch run button sends, until the run's status is final (the daemon dequeues it, a
run worker starts, loads the code location and runs it). Each side on an emptied data root every time.

    python bench/dagster_vs_cli.py [--scale 1] [--workers 1] [--repeat 5] [--ui]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imp_data.build import build  # noqa: E402
from imp_data.core.context import BuildContext  # noqa: E402
from imp_data.core.recipe import load_recipe  # noqa: E402
from imp_data.fixtures import write_mirror  # noqa: E402
from tests.dagster_dev import STOCK_SQLITE, instance_from  # noqa: E402

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


def dagster_job(root: Path, instance, workers: int, mix: str) -> float:
    """`<mix>_job` as the UI launches it (the job's own tags: the whole partition range)."""
    from pipelines.definitions import build_definitions

    os.environ["IMP_DATA_WORKERS"] = str(workers)
    job = build_definitions(DEMO, data_root=str(root), runs=[]).resolve_job_def(f"{mix}_job")
    start = time.perf_counter()
    result = job.execute_in_process(instance=instance, tags=job.tags)
    seconds = time.perf_counter() - start
    assert result.success, mix
    return seconds


def ui_rows(tmp: Path, mirror: Path, mixes: list[str], repeat: int, workers: int) -> list[tuple]:
    """(mix, {side: median seconds}) of the command and of a UI launch, end to end."""
    import shutil
    import subprocess

    from tests.dagster_dev import dagster_dev

    def empty(root: Path) -> None:
        for path in root.iterdir():
            if path.name != "mirror":
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    env = {**os.environ, "IMP_DATA_PROGRESS": "0", "IMP_DATA_WORKERS": str(workers)}
    command = [sys.executable, "-m", "imp_data.cli", "build", str(DEMO), "--workers", str(workers)]
    cli_root, data, home = fresh_root(tmp, "cli", mirror), tmp / "ui_data", tmp / "ui_home"
    data.mkdir()
    home.mkdir()
    rows = []
    with dagster_dev(home, data, mirror, IMP_DATA_WORKERS=str(workers)) as (_, gql):
        assert gql.run_job(f"{mixes[0]}_job") == "SUCCESS", gql.log_tail()  # code server and instance warm
        for mix in mixes:
            times = {"cli": [], "ui": []}
            for _ in range(repeat):
                empty(cli_root)
                start = time.perf_counter()
                subprocess.run([*command, "--mix", mix, "--data-root", str(cli_root)], env=env, check=True,
                               capture_output=True)
                times["cli"].append(time.perf_counter() - start)
                empty(data)
                start = time.perf_counter()
                assert gql.run_job(f"{mix}_job") == "SUCCESS", gql.log_tail()
                times["ui"].append(time.perf_counter() - start)
            rows.append((mix, {side: statistics.median(t) for side, t in times.items()}))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=1, help="fixture mirror scale (1: the demo's)")
    parser.add_argument("--workers", type=int, default=1, help="processes per stage, both sides")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per mix and side (medians compared)")
    parser.add_argument("--ui", action="store_true", help="end to end: the command vs a launch on `dagster dev`")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # dagster's beta/preview notices
    mixes = list(load_recipe(DEMO).mixes)
    if args.ui:
        with tempfile.TemporaryDirectory() as tmp:
            mirror = Path(tmp) / "mirror"
            write_mirror(mirror, scale=args.scale, seed=0)
            rows = ui_rows(Path(tmp), mirror, mixes, args.repeat, args.workers)
        print(f"scale {args.scale}, workers {args.workers}, {os.cpu_count()} CPUs, median of {args.repeat}, "
              "end to end")
        print("| mix | `imp-data build --mix` command | `<mix>_job` launched on `dagster dev` | ratio |")
        print("|---|---:|---:|---:|")
        for mix, t in rows:
            print(f"| {mix} | {t['cli']:.2f} s | {t['ui']:.2f} s | {t['ui'] / t['cli']:.2f}x |")
        return
    configs = {"dagster.yaml": (ROOT / "dagster.yaml").read_text(), "stock sqlite": STOCK_SQLITE}
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        tmp = Path(tmp)
        instances = {name: stack.enter_context(instance_from(config, tmp / f"home_{n}"))
                     for n, (name, config) in enumerate(configs.items())}
        mirror = tmp / "mirror"
        write_mirror(mirror, scale=args.scale, seed=0)
        # imports, first-use caches and the instances' tables, on every side, so none pays them in the timings
        cli_build(fresh_root(tmp, "warmup", mirror), args.workers)
        for n, instance in enumerate(instances.values()):
            for mix in mixes:
                dagster_job(fresh_root(tmp, f"warmup_{n}_{mix}", mirror), instance, args.workers, mix)
        for mix in mixes:  # each side from an empty data root every time: sources included
            times = {"cli": [], **{name: [] for name in instances}}
            for i in range(args.repeat):
                times["cli"].append(cli_build(fresh_root(tmp, f"cli_{mix}_{i}", mirror), args.workers, mix))
                for n, (name, instance) in enumerate(instances.items()):
                    times[name].append(dagster_job(fresh_root(tmp, f"dagster_{n}_{mix}_{i}", mirror), instance,
                                                   args.workers, mix))
            rows.append((mix, {side: statistics.median(t) for side, t in times.items()}))
    print(f"scale {args.scale}, workers {args.workers}, {os.cpu_count()} CPUs, median of {args.repeat}")
    print("| mix | imp-data build --mix | <mix>_job, dagster.yaml | ratio | <mix>_job, stock sqlite | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for mix, t in rows:
        cli = t["cli"]
        print(f"| {mix} | {cli:.2f} s | " + " | ".join(f"{t[name]:.2f} s | {t[name] / cli:.2f}x" for name in configs)
              + " |")

if __name__ == "__main__":
    main()
