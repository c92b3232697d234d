"""Rebuild cost vs clean build, side by side in one process: what content-addressed stages save.

Builds the demo recipe over a fixture mirror (scale N) from scratch, then rebuilds it unchanged, after a
one-letter edit of one LLaVA-665K answer, and after one image's new bytes, each on a copy of the clean
build, and prints each rebuild's wall time as a ratio of the clean build's, with what it redid.

    python bench/rebuild.py [--scale 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imp_data.build import build  # noqa: E402
from imp_data.core.context import BuildContext  # noqa: E402
from imp_data.core.recipe import load_recipe  # noqa: E402
from imp_data.fixtures import write_mirror  # noqa: E402


def timed_build(root: Path, workers: int) -> tuple[float, list[dict]]:
    ctx = BuildContext(recipe=load_recipe(ROOT / "manifests" / "demo.yaml"), data_root=root, workers=workers,
                       progress=False)
    start = time.perf_counter()
    build(ctx)
    return time.perf_counter() - start, ctx.reuse


def edit_text(mirror: Path) -> None:
    """One letter of one planned LLaVA-665K answer (same length), as tests/test_rebuilds.py edits it."""
    from tests.test_rebuilds import edit_text as one_letter

    one_letter(mirror, mirror.parent)


def edit_image(mirror: Path) -> None:
    """New pixels for one planned image: one member of the COCO zip rewritten, as published."""
    from tests.test_rebuilds import edit_image as rewrite_member

    rewrite_member(mirror, mirror.parent)


def summary(reuse: list[dict]) -> str:
    done = [f"{r['stage']} {r['subject']} {r['redone']}" for r in reuse if r["redone"]]
    return "; ".join(done) or "nothing"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=4, help="fixture mirror scale (records per source x N)")
    parser.add_argument("--workers", type=int, default=2, help="processes for render and shard writing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "clean"
        write_mirror(clean / "mirror", scale=args.scale, seed=0)
        base, _ = timed_build(clean, args.workers)
        print(f"clean build: {base:.2f} s")
        for name, edit in (("unchanged", None), ("one text edit", edit_text), ("one image edit", edit_image)):
            root = Path(tmp) / name.replace(" ", "_")
            shutil.copytree(clean, root, symlinks=True)
            if edit is not None:
                edit(root / "mirror")
            seconds, reuse = timed_build(root, args.workers)
            print(f"{name}: {seconds:.2f} s = {seconds / base:.2f}x the clean build; redone: {summary(reuse)}")


if __name__ == "__main__":
    main()
