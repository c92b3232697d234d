"""Shared fixtures: the demo data (fixture mirror + both demo mixes) built once per test session.

Run the whole suite: pytest (README's test command installs first: bash scripts/test.sh).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_RECIPE = ROOT / "manifests" / "demo.yaml"

os.environ.setdefault("IMP_DATA_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "0")


def build_demo(data_root: Path, workers: int = 1) -> dict:
    from imp_data.build import BuildContext, build
    from imp_data.fixtures import write_mirror
    from imp_data.recipe import load_recipe

    write_mirror(data_root / "mirror", scale=1, seed=0)
    ctx = BuildContext(recipe=load_recipe(DEMO_RECIPE), data_root=data_root, workers=workers, progress=False)
    return build(ctx)


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory) -> tuple[Path, dict]:
    """(data root, build result) of the demo recipe, built once for the session; treat as read-only."""
    root = tmp_path_factory.mktemp("demo")
    return root, build_demo(root)
