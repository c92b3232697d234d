"""`imp-data validate` on a built mix checks the mix as a whole: a tar, plan, index or stats.json edited so
that each file is still valid on its own is reported naming shard, key and field; a mix built by older code
or from a recipe that has since changed is stale (exit 1). Real demo build, real tars, edited in copies.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import polars as pl
import pytest
import yaml

from imp_data.audit.validate import validate_paths
from imp_data.core.fingerprint import CODE_VERSIONS
from tests.conftest import DEMO_RECIPE, ROOT, guarded_env

MIX = "demo_stage2"


@pytest.fixture
def mix(demo_build, tmp_path):
    """A private copy of the demo's stage-2 mix (the render cache left out: validate does not read it)."""
    root, _ = demo_build
    dst = tmp_path / "mixes" / MIX
    shutil.copytree(root / "mixes" / MIX, dst, ignore=shutil.ignore_patterns("render", "charts"))
    return dst


def _index_row(mix, shard: int, *, with_image: bool = True) -> dict:
    """An index row of `shard` (offsets of its members in the tar)."""
    index = pl.read_parquet(mix / "index.parquet").filter(pl.col("shard") == shard)
    if with_image:
        index = index.filter(pl.col("jpg_offset").is_not_null())
    return index.row(0, named=True)


def _lines(problems: list[str], *parts: str) -> list[str]:
    return [p for p in problems if all(part in p for part in parts)]


def test_clean_mix_validates_ok(demo_build):
    root, _ = demo_build
    assert validate_paths([DEMO_RECIPE, root / "mixes" / MIX]) == []
    out = subprocess.run([sys.executable, "-m", "imp_data.cli", "validate", "manifests/demo.yaml",
                          str(root / "normalized"), str(root / "mixes" / MIX)], capture_output=True, text=True,
                         cwd=ROOT, timeout=300, env=guarded_env({"IMP_DATA_PROGRESS": "0", "PATH": "/usr/bin:/bin"}))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "3 path(s) checked: OK", out.stdout


def test_letter_edited_in_a_tar_json_names_shard_key_and_field(mix):
    row = _index_row(mix, 2)
    tar = mix / "shards" / row["shard_name"]
    data = bytearray(tar.read_bytes())
    member = data[row["json_offset"]:row["json_offset"] + row["json_size"]]
    answer = json.loads(member)["conversations"][1]["value"]
    letter = next(c for c in answer if c.isascii() and c.isalpha())
    at = row["json_offset"] + member.index(json.dumps(answer, ensure_ascii=False)[1:-1].encode()) \
        + answer.index(letter)
    data[at] = ord("Z" if letter != "Z" else "Y")  # same size: the tar stays a valid tar, the JSON valid JSON
    tar.write_bytes(bytes(data))

    problems = validate_paths([mix])
    where = f"{tar}: key {row['key']}"
    assert _lines(problems, where, "field conversations: differs from plan.parquet", "sha256"), problems
    assert _lines(problems, where, "field json_sha256"), problems
    assert _lines(problems, str(tar), "sha256 differs from the index"), problems
    assert all(str(tar) in p for p in problems), problems  # nothing else in the mix is blamed


def test_plan_edit_names_shard_key_and_field(mix):
    plan = pl.read_parquet(mix / "plan.parquet")
    target = plan.filter(pl.col("shard") == 3).row(0, named=True)
    changed = [{**turn, "value": turn["value"] + " (edited)"} for turn in target["conversations"]]
    plan = plan.with_columns(pl.when(pl.col("key") == target["key"]).then(pl.lit(changed, dtype=plan.schema[
        "conversations"])).otherwise(pl.col("conversations")).alias("conversations"))
    plan.write_parquet(mix / "plan.parquet")

    problems = validate_paths([mix])
    tar = mix / "shards" / f"{MIX}-000003.tar"
    assert len(problems) == 1, problems
    assert _lines(problems, f"{tar}: key {target['key']} field conversations: differs from plan.parquet"), problems


def test_plan_rows_missing_or_extra_and_report_cap(mix):
    plan = pl.read_parquet(mix / "plan.parquet")
    gone = plan.filter(pl.col("shard") == 1).row(0, named=True)["key"]
    plan.filter(pl.col("key") != gone).write_parquet(mix / "plan.parquet")
    problems = validate_paths([mix])
    tar = mix / "shards" / f"{MIX}-000001.tar"
    assert _lines(problems, f"{tar}: key {gone}: in the tar but not in plan.parquet"), problems
    assert _lines(problems, "index.parquet", f"key {gone}: in index.parquet but not in plan.parquet"), problems

    extra = plan.filter(pl.col("shard") == 0).head(1).with_columns(pl.lit("999999999").alias("key"))
    pl.concat([plan, extra]).write_parquet(mix / "plan.parquet")
    problems = validate_paths([mix])
    assert _lines(problems, f"{MIX}-000000.tar: key 999999999: in plan.parquet but missing from the tar"), problems

    # every sample now disagrees with the plan: the report stops at max_report lines
    plan.with_columns(pl.col("id") + "x").write_parquet(mix / "plan.parquet")
    assert len(validate_paths([mix], max_report=5)) == 5


def test_jpeg_bytes_overwritten_is_reported(mix):
    row = _index_row(mix, 1)
    tar = mix / "shards" / row["shard_name"]
    with open(tar, "r+b") as f:
        f.seek(row["jpg_offset"] + row["jpg_size"] // 2)
        f.write(b"\x00" * 8)
    problems = validate_paths([mix])
    assert _lines(problems, f"{tar}: key {row['key']} field jpg_sha256: {row['key']}.jpg bytes differ"), problems


def test_stats_taken_edited_is_reported(mix):
    stats = json.loads((mix / "stats.json").read_text())
    stats["totals"]["taken"] += 1
    stats["sources"]["dvqa"]["taken"] -= 1
    (mix / "stats.json").write_text(json.dumps(stats))
    problems = validate_paths([mix])
    assert _lines(problems, "stats.json: field totals.taken", "rows in index.parquet"), problems
    assert _lines(problems, "stats.json: field sources.dvqa.taken"), problems
    assert len(problems) == 2, problems


def test_older_code_version_is_stale(mix):
    stats = json.loads((mix / "stats.json").read_text())
    stats["built_by"]["render"] = "0-" + stats["built_by"]["render"].partition("-")[2]
    (mix / "stats.json").write_text(json.dumps(stats))
    problems = validate_paths([mix])
    assert problems == [f"{mix}: stale — built by an older imp-data (stage render: code version 0, "
                        f"now {CODE_VERSIONS['render']}); "
                        "rebuild with imp-data build RECIPE"], problems

    del stats["built_by"]
    (mix / "stats.json").write_text(json.dumps(stats))
    out = subprocess.run([sys.executable, "-m", "imp_data.cli", "validate", str(mix)], capture_output=True,
                         text=True, timeout=300, env=guarded_env({"IMP_DATA_PROGRESS": "0", "PATH": "/usr/bin:/bin"}))
    assert out.returncode == 1 and f"{mix}: stale — stats.json records no built_by" in out.stdout, out.stdout


def test_recipe_with_another_render_resolution_is_stale(demo_build, tmp_path):
    root, _ = demo_build
    raw = yaml.safe_load(DEMO_RECIPE.read_text())
    raw["render"]["resolution"] = 32
    recipe = tmp_path / "demo.yaml"
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))  # key order is source order: keep it
    problems = validate_paths([recipe, root / "mixes" / MIX])
    stale = _lines(problems, f"{root / 'mixes' / MIX}: stale — the recipe {recipe} changed what stages render,")
    assert stale and "select" not in stale[0] and "dedup" not in stale[0], problems
    assert len(problems) == 1, problems
