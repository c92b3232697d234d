"""Decontamination end to end on the demo (issue 6): the benchmark sets are read by the eval job's own
split loaders (the images the questions ask about, MMBench's base64 images included; `scope: all` lists the
whole download with `imp_data.eval.benchmarks.list_images`) or, as published, from an archive;
with the TextCaps rule off every TextCaps/TextVQA overlap is found — the exact copy and the
re-encoded and resized-and-cropped ones — with it on the report says none remain; the removal table
reconciles with stats and the shard index; and the blocking check's library side
(`imp_data.audit.quality.contamination_left`) fails when matching samples are in the plan beyond the policy.

Run: pytest tests/test_decontamination.py
"""

from __future__ import annotations

import base64
import io
import json
import random
import zipfile
from pathlib import Path

import polars as pl
import pytest
import yaml

from imp_data.audit.quality import contamination_left
from imp_data.build import build
from imp_data.core.context import BuildContext
from imp_data.core.errors import ImpDataError
from imp_data.core.recipe import parse_recipe
from imp_data.fixtures import pictures
from imp_data.fixtures.benchmarks import NEAR_DUPLICATES, TEXTVQA_COPIES
from imp_data.fixtures.eval_benchmarks import write_benchmark_fixtures
from imp_data.images import hash_image
from imp_data.mix.dedup_policy import benchmark_hashes, list_benchmark_images
from tests.conftest import DEMO_RECIPE

MIX = "demo_stage2"


def decontam_build(tmp_path: Path, demo_root: Path, *, textcaps_rule: bool, decontaminate: dict | None = None):
    recipe = yaml.safe_load(DEMO_RECIPE.read_text())
    mix = recipe["mixes"][MIX]
    if not textcaps_rule:
        mix["sources"]["llava_665k"]["drop"] = []
    if decontaminate is not None:
        mix["decontaminate"].update(decontaminate)
    recipe["max_reject_rate"] = 1.0
    data = tmp_path / f"{'on' if textcaps_rule else 'off'}-{len(list(tmp_path.iterdir()))}"
    data.mkdir()
    (data / "mirror").symlink_to(demo_root / "mirror", target_is_directory=True)
    ctx = BuildContext(recipe=parse_recipe(recipe), data_root=data, progress=False)
    return ctx, build(ctx, mixes=[MIX])["mixes"][MIX]


def test_textcaps_overlap_found_exact_and_near_and_reconciled(demo_build, tmp_path):
    demo_root, _ = demo_build
    ctx, stats = decontam_build(tmp_path, demo_root, textcaps_rule=False)
    normalized = pl.read_parquet(ctx.layout.normalized("llava_665k"))
    textcaps = normalized.filter(pl.col("image").str.starts_with("textvqa/")).sort("image")
    found = pl.read_parquet(ctx.layout.mix(MIX) / "contamination.parquet").sort("benchmark", "image_name")
    textvqa = found.filter(pl.col("benchmark") == "textvqa")
    # each TextCaps image matches its benchmark copy, by name: exact for the byte copy, near for the others
    assert textvqa["id"].to_list() == textcaps["id"].to_list()
    assert textvqa["image_name"].to_list() == [p.removeprefix("textvqa/") for p in textcaps["image"]]
    assert textvqa["match"].to_list() == ["exact" if how == "exact" else "near" for how in TEXTVQA_COPIES]
    assert textvqa["distance"][0] == 0 and all(0 <= d <= 8 for d in textvqa["distance"])
    pope = found.filter(pl.col("benchmark") == "pope")
    assert pope["id"].to_list() == [f"llava_665k/{m.split('/')[1][:-4]}" for m in sorted(NEAR_DUPLICATES)]
    assert set(pope["match"]) == {"near"}
    assert stats["contamination"]["benchmarks"] == {
        "pope": {"found": 3, "remaining": 0, "dropped": 3, "exact": 0},
        "textvqa": {"found": 3, "remaining": 0, "dropped": 3, "exact": 1}}

    # the removal table reconciles with stats and the shard index
    removals = pl.read_parquet(ctx.layout.removals(MIX))
    index = pl.read_parquet(ctx.layout.index(MIX))
    assert set(found["id"]) <= set(removals["id"]) and set(removals["id"]).isdisjoint(set(index["id"]))
    rejects = pl.read_parquet(ctx.layout.rejects(MIX))
    for source, entry in stats["sources"].items():
        counted = {k: v for k, v in entry["dropped"].items() if k.startswith(("contaminated:", "duplicate_"))}
        actual = dict(removals.filter(pl.col("source") == source).group_by("reason").len().rows())
        assert counted == actual, source
        in_rejects = rejects.filter((pl.col("source") == source) & pl.col("stage").is_in(["dedup", "decontaminate"]))
        assert in_rejects.height == sum(actual.values()), source
    assert contamination_left(ctx, MIX) == {"ok": True, "matched": 6, "left": 0, "limit": 0, "policy": "drop",
                                            "examples": []}

    ctx_on, stats_on = decontam_build(tmp_path, demo_root, textcaps_rule=True)
    assert "textvqa" not in stats_on["contamination"]["benchmarks"]
    assert stats_on["contamination"]["remaining"] == 0
    assert "**0 contaminated samples remain in the shards.**" in ctx_on.layout.report(MIX).read_text()


def test_report_only_policy_and_its_limit(demo_build, tmp_path):
    demo_root, _ = demo_build
    ctx, stats = decontam_build(tmp_path, demo_root, textcaps_rule=False, decontaminate={"drop": False})
    assert stats["contamination"]["remaining"] == 6  # reported, kept
    left = contamination_left(ctx, MIX)
    assert left["ok"] and left["left"] == 6 and left["limit"] is None and left["policy"] == "report only"
    ctx, _ = decontam_build(tmp_path, demo_root, textcaps_rule=False,
                            decontaminate={"drop": False, "max_remaining": 2})
    left = contamination_left(ctx, MIX)
    assert not left["ok"] and (left["left"], left["limit"]) == (6, 2)
    assert left["examples"][0].startswith("llava_665k/000000000100 ~ pope val2014/COCO_val2014_000000500000.jpg")


def test_check_reads_the_plan_not_the_removal_table(demo_build, tmp_path):
    """A plan built before the removals (stale) still holds the contaminated samples: the check sees them."""
    demo_root, _ = demo_build
    ctx, _ = decontam_build(tmp_path, demo_root, textcaps_rule=True)
    plan = pl.read_parquet(ctx.layout.plan(MIX))
    found = pl.read_parquet(ctx.layout.mix(MIX) / "contamination.parquet")
    stale = pl.concat([plan.select("id"), found.select("id")])
    stale.write_parquet(ctx.layout.plan(MIX))
    left = contamination_left(ctx, MIX)
    assert not left["ok"] and left["left"] == found.height == 3


def test_eval_layout_lists_the_images_its_questions_ask_about(tmp_path):
    """Read by the eval job's loaders: MMBench's base64 images (the test TSV shares dev's, listed once), and
    for POPE only the val2014 images its questions name, not the rest of the COCO download."""
    roots = write_benchmark_fixtures(tmp_path / "eval")
    header, first = (roots["mmbench"] / "mmbench_dev_20230712.tsv").read_text().splitlines()[:2]
    first_image = base64.b64decode(first.split("\t")[header.split("\t").index("image")])
    assert [n for n, _ in list_benchmark_images(roots["mmbench"], "mmbench")] == ["mmbench#0", "mmbench#1"]
    assert hash_image(first_image)[0] in set(benchmark_hashes("mmbench", roots["mmbench"])["sha256"])

    asked = {json.loads(line)["image"] for line in (roots["pope"] / "llava_pope_test.jsonl").read_text().splitlines()}
    (roots["pope"] / "val2014" / "COCO_val2014_000000999999.jpg").write_bytes(pictures.photo(random.Random(9)))
    listed = [n for n, _ in list_benchmark_images(roots["pope"], "pope")]
    assert sorted(listed) == sorted(f"val2014/{a}" for a in asked)
    everything = [n for n, _ in list_benchmark_images(roots["pope"], "pope", scope="all")]  # the whole download
    assert sorted(everything) == sorted([*listed, "val2014/COCO_val2014_000000999999.jpg"])
    (roots["pope"] / "val2014" / sorted(asked)[0]).unlink()
    with pytest.raises(ImpDataError, match="names an image that cannot be read"):
        list(list_benchmark_images(roots["pope"], "pope"))


def test_lmms_lab_parquet_copies_are_read_by_the_same_loaders(tmp_path):
    from tests.lmms_fixtures import write_lmms_fixtures

    roots = write_lmms_fixtures(tmp_path / "lmms")
    pope = list(list_benchmark_images(roots["pope"], "pope"))
    assert pope and all(n.startswith("pope#") for n, _ in pope)
    assert len({hash_image(d)[0] for _, d in pope}) == len(pope), "each image once"


def test_published_archive_and_plain_folder_locations(tmp_path):
    data = [pictures.photo(random.Random(k), 64, 48) for k in range(3)]
    with zipfile.ZipFile(tmp_path / "train_val_images.zip", "w") as zf:
        for k, d in enumerate(data):
            zf.writestr(f"train_images/{k}.jpg", d)
    assert [n for n, _ in list_benchmark_images(tmp_path / "train_val_images.zip", "textvqa")] == [
        "train_images/0.jpg", "train_images/1.jpg", "train_images/2.jpg"]
    folder = tmp_path / "plain"
    folder.mkdir()
    for k, d in enumerate(data):
        (folder / f"{k}.jpg").write_bytes(d)
    assert [n for n, _ in list_benchmark_images(folder, "pope")] == ["0.jpg", "1.jpg", "2.jpg"]
    with pytest.raises(ImpDataError, match="benchmark image set not found"):
        list(list_benchmark_images(tmp_path / "nowhere", "pope"))


def test_a_published_url_is_fetched_once_then_read_in_place(tmp_path):
    """imp_1m names TextVQA's image zip by its URL: fetched into DATA/raw/benchmarks/<name>/ once, hashed there."""
    from types import SimpleNamespace

    from imp_data.core.layout import Layout
    from imp_data.mix.dedup_policy import benchmark_location
    from tests.servers.image_server import ImageServer

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("train_images/0.jpg", pictures.photo(random.Random(1), 64, 48))
    ctx = SimpleNamespace(data_root=tmp_path, layout=Layout(tmp_path), progress=False, remote=None)
    with ImageServer() as server:
        url = server.add_file("textvqa/train_val_images.zip", buf.getvalue())
        path = benchmark_location(ctx, "textvqa", url)
        assert path.is_relative_to(tmp_path / "raw" / "benchmarks" / "textvqa") and path.read_bytes() == buf.getvalue()
        server.clear()
        assert benchmark_location(ctx, "textvqa", url) == path and server.seen() == []
    assert benchmark_hashes("textvqa", path)["image_name"].to_list() == ["train_images/0.jpg"]
    assert benchmark_location(ctx, "pope", "eval/pope") == tmp_path / "eval/pope"
