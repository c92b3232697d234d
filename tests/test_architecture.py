"""The layers of docs/design.md §9 hold: pyproject's import-linter contracts pass on the tree, and fail when
an upward import is planted (so the contracts are not vacuous); the floor's copy of each adapter's
options is the adapter's own.

Run: pytest tests/test_architecture.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """`lint-imports` with the project's contracts, importing `imp_data` from `tree`."""
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "4 kept, 0 broken" in out.stdout


def test_an_upward_import_breaks_the_contracts(tmp_path):
    shutil.copytree(ROOT / "imp_data", tmp_path / "imp_data", ignore=shutil.ignore_patterns("__pycache__"))
    layout = tmp_path / "imp_data" / "core" / "layout.py"
    layout.write_text(layout.read_text() + "\n\ndef _upward():\n    from imp_data.build import build  # noqa\n")
    out = lint_imports(tmp_path)
    assert out.returncode == 1, out.stdout[-3000:]
    assert "imp_data.core.layout -> imp_data.build" in out.stdout
    assert "BROKEN" in out.stdout and "Layers (docs/design.md §9)" in out.stdout


def test_floor_adapter_options_are_the_adapters_own():
    from imp_data.core.source_options import ADAPTER_OPTIONS, FILE_INDEX_ADAPTERS
    from imp_data.sources.registry import ADAPTERS

    assert {name: adapter.Options for name, adapter in ADAPTERS.items()} == ADAPTER_OPTIONS
    assert FILE_INDEX_ADAPTERS <= set(ADAPTERS)


def test_every_module_is_in_the_module_map():
    """docs/design.md §9 lists every module of imp_data/ and pipelines/ (by its path in its package)."""
    text = (ROOT / "docs" / "design.md").read_text()
    section = text[text.index("## 9. Layers and the module map"):]
    missing = []
    for top in ("imp_data", "pipelines"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT / top)
            if rel.name == "__init__.py" and rel.parent.name in ("", "eval", "mix", "shards", "sources", "train",
                                                                 "core", "audit", "storage", "publish", "fetch"):
                continue  # a package's own docstring is its entry in the map's heading
            if f"`{rel.name}`" not in section and f"`{rel.as_posix()}`" not in section:
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"add to docs/design.md §9: {missing}"
