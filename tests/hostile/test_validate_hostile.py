"""Hostile inputs to `imp-data validate` (issue 16): a recipe nested 100,000 levels deep, a corrupt
index.parquet, and a non-UTF-8 byte inside a shard's KEY.json are each one line naming the file (and the
shard and key), exit 1, never a traceback — and the other paths of the same call are still checked.

Run: pytest tests/hostile/test_validate_hostile.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import DEMO_RECIPE, ROOT

MIX = "demo_stage2"


def validate(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imp_data.cli", "validate", *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def assert_no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr and "unexpected error" not in proc.stderr, proc.stderr


def test_recipe_nested_100000_levels_is_one_line(roots):
    deep = roots.data / "deep.yaml"
    deep.write_text("name: x\nsources: " + "[" * 100_000 + "]" * 100_000 + "\n")
    proc = validate(deep, DEMO_RECIPE)
    assert proc.returncode == 1
    assert_no_traceback(proc)
    assert f"{deep}: the YAML is nested too deeply to be a recipe" in proc.stdout
    assert "1 problem(s)" in proc.stdout, "the demo recipe beside it is still checked, and passes"


def test_corrupt_index_is_one_line_naming_it(roots, demo_build):
    mix = roots.data / MIX
    shutil.copytree(demo_build[0] / "mixes" / MIX, mix)
    index = mix / "index.parquet"
    index.write_bytes(index.read_bytes()[:100])
    proc = validate(mix)
    assert proc.returncode == 1
    assert_no_traceback(proc)
    [line] = [x for x in proc.stdout.splitlines() if x.startswith(str(index))]
    assert "not a readable Parquet table" in line and "rebuild" in line


def test_non_utf8_byte_in_a_shard_json_names_shard_and_key(roots, demo_build):
    mix = roots.data / MIX
    shutil.copytree(demo_build[0] / "mixes" / MIX, mix)
    tar = sorted((mix / "shards").glob("*.tar"))[1]
    data = bytearray(tar.read_bytes())
    at = data.find(b'"conversations"') + 20  # inside the first member's text, same size
    data[at] = 0xFF
    tar.write_bytes(bytes(data))
    proc = validate(mix)
    assert proc.returncode == 1
    assert_no_traceback(proc)
    lines = [x for x in proc.stdout.splitlines() if "is not UTF-8" in x]
    assert lines and all(x.startswith(f"{tar}: key ") and "0xff" in x for x in lines), proc.stdout
