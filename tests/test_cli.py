"""The command line as a user meets it: `--help` lists every command; `fixtures` + `build --until
normalized` prints a balanced reconciliation table and writes parquet that `validate` accepts; `--sources`
builds only the named sources; bad input is one line naming file and record (exit 1), never a traceback;
`validate` refuses (exit 1) a file it does not know instead of calling it OK.

Run: pytest tests/test_cli.py
"""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest

from imp_data.core.recipe import load_recipe
from tests.conftest import DEMO_RECIPE, ROOT, guarded_env

COMMANDS = ["fixtures", "build", "validate", "stats", "export-llava", "publish", "schemas", "train", "eval", "demo"]


def imp(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imp_data.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env=guarded_env({"IMP_DATA_PROGRESS": "0", "PATH": "/usr/bin:/bin"}))


def test_help_lists_commands():
    out = imp("--help")
    assert out.returncode == 0
    for command in COMMANDS:
        assert command in out.stdout
    assert "--until" in imp("build", "--help").stdout


@pytest.fixture(scope="module")
def normalized(tmp_path_factory):
    data = tmp_path_factory.mktemp("cli")
    assert imp("fixtures", data / "mirror").returncode == 0
    out = imp("build", DEMO_RECIPE, "--data-root", data, "--until", "normalized")
    return data, out


def test_until_normalized_balances_and_validates(normalized):
    data, out = normalized
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("demo_stage")]
    sources = {line.split()[1] for line in lines}
    assert sources == {"llava_pretrain", "llava_665k", "dvqa", "chartqa", "docvqa", "ai2d", "infographicvqa",
                       "sharegpt4v", "laion_gpt4v", "allava"}
    assert all(line.rstrip().endswith("yes") for line in lines)
    textcaps = next(line for line in lines if " llava_665k " in line)
    assert "textcaps 3" in textcaps
    check = imp("validate", data / "normalized", data / "rejects", DEMO_RECIPE)
    assert check.returncode == 0, check.stdout


def test_sources_builds_only_the_named_source(normalized, tmp_path):
    data, _ = normalized
    subprocess.run(["cp", "-r", str(data / "mirror"), str(tmp_path / "mirror")], check=True)
    out = imp("build", DEMO_RECIPE, "--data-root", tmp_path, "--sources", "dvqa", "--until", "normalized")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("demo_stage")]
    assert [row[:2] for row in rows] == [["demo_stage2", "dvqa"]], out.stdout
    assert sorted(p.name for p in (tmp_path / "normalized").glob("*.parquet")) == ["dvqa.parquet"]
    assert sorted(p.name for p in (tmp_path / "rejects").iterdir()) == ["dvqa.parquet"]
    # no raw/, no mixes/ (dot-folders are machine-local state: the file-hash cache and the build lock)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == \
        ["mirror", "normalized", "rejects", "stamps"]
    assert [p.relative_to(tmp_path / "stamps").as_posix() for p in (tmp_path / "stamps").rglob("*.json")] == \
        ["normalized/dvqa.json"]
    built = pl.read_parquet(tmp_path / "normalized" / "dvqa.parquet")
    assert built.height > 0 and set(built["source"]) == {"dvqa"}
    assert built.equals(pl.read_parquet(data / "normalized" / "dvqa.parquet"))  # same as in the full build


def _broken_build(data, tmp_path, edit) -> subprocess.CompletedProcess:
    target = tmp_path / "d"
    (target / "mirror").parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-r", str(data / "mirror"), str(target / "mirror")], check=True)
    edit(target / "mirror")
    return imp("build", DEMO_RECIPE, "--data-root", target, "--until", "normalized", "--sources", "dvqa,chartqa")


@pytest.mark.parametrize("edit, message", [
    (lambda m: (m / "dvqa/train_qa.json").write_text('[{"question": "q", "answer": "a"} {"x": 1}]'),
     r"dvqa/train_qa.json: malformed JSON at character 34 \(after record 0\)"),
    (lambda m: (m / "dvqa/train_qa.json").write_text('{"questions": []}'),
     r"train_qa.json: expected a JSON list at the top level, found an object"),
    (lambda m: (m / "dvqa/train_qa.json").unlink(), r"expected file\(s\) not found: train_qa.json"),
])
def test_bad_input_is_one_line(normalized, tmp_path, edit, message):
    import re

    data, _ = normalized
    out = _broken_build(data, tmp_path, edit)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert re.search(message, out.stderr), out.stderr


def test_unknown_source_and_missing_field(normalized, tmp_path):
    data, _ = normalized
    out = imp("build", DEMO_RECIPE, "--data-root", data, "--sources", "dvqa,nope")
    assert out.returncode == 1 and "unknown source 'nope'" in out.stderr, out.stderr
    valid = ", ".join(load_recipe(DEMO_RECIPE).sources)
    assert f"the recipe declares: {valid}" in out.stderr and valid.count(",") == 9, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1

    def drop_field(mirror):
        records = json.loads((mirror / "dvqa/train_qa.json").read_text())
        del records[1]["answer"]
        (mirror / "dvqa/train_qa.json").write_text(json.dumps(records))

    out = _broken_build(data, tmp_path, drop_field)
    assert out.returncode == 0, out.stderr
    rejects = pl.read_parquet(tmp_path / "d" / "rejects" / "dvqa.parquet")
    row = rejects.filter(pl.col("reason") == "missing_field").row(0, named=True)
    assert row["source_id"] == "120000000" and "train_qa.json record 1" in row["detail"]


def test_validate_and_stats_on_a_built_mix(demo_build, tmp_path):
    root, _ = demo_build
    mix = root / "mixes" / "demo_stage2"
    ok = imp("validate", mix, root / "normalized")
    assert ok.returncode == 0, ok.stdout
    stats = imp("stats", "--markdown", mix)
    assert stats.returncode == 0 and "| source | target | read |" in stats.stdout and "textcaps" in stats.stdout
    aligned = imp("stats", mix)  # the terminal form: the same table, aligned columns
    assert aligned.returncode == 0 and "textcaps" in aligned.stdout and "| source |" not in aligned.stdout
    # a tampered copy: one JSON member rewritten in place, one shard truncated
    bad = tmp_path / "bad"
    subprocess.run(["cp", "-r", str(mix), str(bad)], check=True)
    tars = sorted((bad / "shards").glob("*.tar"))
    data = bytearray(tars[0].read_bytes())
    start = data.index(b'"conversations"')
    data[start:start + 15] = b'"conversationz"'
    tars[0].write_bytes(bytes(data))
    tars[1].write_bytes(tars[1].read_bytes()[:700])
    out = imp("validate", bad)
    assert out.returncode == 1
    assert "sha256 differs from the index" in out.stdout
    assert "conversationz" in out.stdout or "Extra inputs" in out.stdout
    assert "corrupt or truncated tar" in out.stdout or "member keys differ" in out.stdout


def test_validate_refuses_what_it_does_not_know(demo_build, tmp_path):
    root, _ = demo_build
    mix = root / "mixes" / "demo_stage2"
    pl.DataFrame({"a": [1], "b": ["x"]}).write_parquet(tmp_path / "foreign.parquet")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    cases = {
        tmp_path / "foreign.parquet": "foreign.parquet: unknown parquet table (columns: a, b)",
        tmp_path / "garbage.parquet": "garbage.parquet: not a readable parquet file",
        mix / "selected.parquet": "selected.parquet: unknown parquet table (columns: id, source, source_id",
        tmp_path / "notes": "notes: nothing to validate in this directory",
        ROOT / "pyproject.toml": "pyproject.toml: don't know how to validate this kind of file",
    }
    for path, message in cases.items():
        out = imp("validate", path)
        assert out.returncode == 1 and message in out.stdout and "OK" not in out.stdout, (path, out.stdout)
    # our tables are told by their columns: a mix's index (checked with its shards), plan, drops; recipes of both
    # kinds, and a folder of mix directories, are checked rather than waved through
    known = [mix / "index.parquet", mix / "plan.parquet", mix / "drops.parquet", root / "mixes",
             ROOT / "manifests", ROOT / "manifests" / "runs"]
    out = imp("validate", *known)
    assert out.returncode == 0 and out.stdout.strip() == f"{len(known)} path(s) checked: OK", out.stdout
    bad = tmp_path / "bad_plan.parquet"
    plan = pl.read_parquet(mix / "plan.parquet")
    plan.with_columns(pl.when(pl.col("position") == 0).then(pl.lit("/etc/passwd")).otherwise(pl.col("image"))
                      .alias("image")).write_parquet(bad)
    out = imp("validate", bad)
    assert out.returncode == 1 and "row 0" in out.stdout and "is absolute" in out.stdout, out.stdout
