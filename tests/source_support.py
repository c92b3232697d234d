"""Helpers shared by the adapter tests (tests/test_sources_*.py): run an adapter over files, write JSON."""

from __future__ import annotations

import json
from pathlib import Path

from imp_data.fixtures.llava import SAMPLES  # noqa: F401 - re-exported: the real published records (see its PROVENANCE.md)
from imp_data.sources.registry import get_adapter


def read(adapter: str, root: Path, files: list[str], **options) -> list:
    """Everything the adapter yields (Candidates and Problems) for `files` under `root`."""
    a = get_adapter(adapter)
    return list(a.read(root, files, a.parse_options(options)))


def write(tmp_path: Path, name: str, obj) -> str:
    """`obj` as JSON at tmp_path/name (folders made); returns `name` for the adapter's file list."""
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(json.dumps(obj), encoding="utf-8")
    return name
