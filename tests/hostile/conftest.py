"""Hostile-input tests share one rule: nothing is written outside the roots a test hands out.

`roots` gives a data root, a cache and an export folder inside a sentinel folder; after the test, the
sentinel must hold those three and nothing else, and nothing may appear beside the sentinel either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Roots:
    sentinel: Path
    data: Path
    cache: Path
    export: Path


@pytest.fixture
def roots(tmp_path: Path):
    sentinel = tmp_path / "sentinel"
    made = Roots(sentinel, sentinel / "data", sentinel / "cache", sentinel / "export")
    for path in (made.data, made.cache, made.export):
        path.mkdir(parents=True)
    before = sorted(p.name for p in tmp_path.iterdir())
    yield made
    assert sorted(p.name for p in sentinel.iterdir()) == ["cache", "data", "export"], \
        f"something was written beside the roots: {sorted(p.name for p in sentinel.iterdir())}"
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "something was written above the roots"
