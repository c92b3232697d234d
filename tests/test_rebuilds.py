"""Incremental rebuilds (issue 15): after each kind of edit, a rebuild over the old outputs equals a clean
build of the same inputs byte for byte, redoes no more than the edit touches (asserted from the build's
own reuse report, never from timing), and an unchanged rebuild redoes nothing.

Run: pytest tests/test_rebuilds.py
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from imp_data.build import build
from imp_data.core.context import BuildContext
from imp_data.core.recipe import Recipe, load_recipe
from tests.conftest import DEMO_RECIPE

STAGE2 = "demo_stage2"


def outputs(root: Path) -> dict[str, bytes]:
    """Every file a build wrote: not the mirror (input), not the machine-local state (hash cache, lock)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in ("mirror", ".imp-data")}


def run_build(root: Path, recipe: Recipe, workers: int = 1) -> BuildContext:
    ctx = BuildContext(recipe=recipe, data_root=root, workers=workers, progress=False)
    build(ctx)
    return ctx


def redone(ctx: BuildContext, stage: str, subject: str = STAGE2) -> int:
    [entry] = [r for r in ctx.reuse if r["stage"] == stage and r["subject"] == subject]
    return entry["redone"]


def total_redone(ctx: BuildContext) -> int:
    return sum(r["redone"] for r in ctx.reuse)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A demo build whose outputs every case starts from (each case works on its own copy)."""
    from imp_data.fixtures import write_mirror

    root = tmp_path_factory.mktemp("rebuild-base")
    write_mirror(root / "mirror", scale=1, seed=0)
    run_build(root, load_recipe(DEMO_RECIPE))
    return root


def with_recipe(edit) -> Recipe:
    raw = load_recipe(DEMO_RECIPE).model_dump(mode="json")
    edit(raw)
    return Recipe.model_validate(raw)


def planned_llava_record(base: Path) -> dict:
    """A LLaVA-665K sample of the base build's stage-2 plan whose COCO image no other sample shows."""
    plan = pl.read_parquet(base / "mixes" / STAGE2 / "plan.parquet")
    llava = plan.filter((pl.col("source") == "llava_665k") & pl.col("image").str.starts_with("coco/"))
    once = llava.filter(pl.col("image").is_unique())
    assert once.height, "the fixture must have a planned COCO sample"
    return once.row(0, named=True)


def edit_text(mirror: Path, base: Path) -> None:
    """One letter of one planned record's answer in LLaVA-665K's JSON (same length)."""
    target = planned_llava_record(base)["source_id"]
    path = mirror / "llava_665k" / "llava_v1_5_mix665k.json"
    records = json.loads(path.read_text())
    [rec] = [r for r in records if str(r["id"]) == target]
    answer = rec["conversations"][1]["value"]
    rec["conversations"][1]["value"] = ("Z" if answer[0] != "Z" else "Y") + answer[1:]
    path.write_text(json.dumps(records))


def edit_image(mirror: Path, base: Path) -> None:
    """New pixels for one planned image (a member of the COCO zip, as published): the zip is rewritten
    with that one member replaced, every other member byte-identical."""
    rel = planned_llava_record(base)["image"]
    archive = mirror / "coco" / "train2017.zip"
    member = "train2017/" + rel.removeprefix("coco/train2017/")
    with zipfile.ZipFile(archive) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(archive, "w") as z:
        for info, data in entries:
            if info.filename == member:
                with Image.open(io.BytesIO(data)) as img:
                    fmt, edited = img.format, img.convert("RGB")
                edited.paste((250, 10, 10), (0, 0, max(1, edited.width // 4), max(1, edited.height // 4)))
                buf = io.BytesIO()
                edited.save(buf, fmt)
                assert buf.getvalue() != data
                data = buf.getvalue()
            z.writestr(info, data)


def no_mirror_edit(mirror: Path, base: Path) -> None:
    return None


CASES = {
    # name: (recipe edit, mirror edit, check(ctx) on the incremental build's reuse report)
    "resolution": (lambda r: r["render"].update(resolution=48), no_mirror_edit,
                   lambda ctx: redone(ctx, "render") > 50 and redone(ctx, "render", "demo_stage1") == 14
                   and redone(ctx, "normalize", "llava_665k") == 0),
    "text_edit": (lambda r: None, edit_text,
                  lambda ctx: redone(ctx, "render") == 0 and 1 <= redone(ctx, "shards") <= 2
                  and redone(ctx, "normalize", "llava_665k") == 1 and redone(ctx, "normalize", "dvqa") == 0
                  and redone(ctx, "shards", "demo_stage1") == 0),
    "image_edit": (lambda r: None, edit_image,
                   lambda ctx: redone(ctx, "render") == 1 and 1 <= redone(ctx, "shards") <= 2
                   and redone(ctx, "normalize", "llava_665k") == 0),
    "drop_rule": (lambda r: r["mixes"][STAGE2]["sources"]["dvqa"].update(
                      drop=[{"name": "no_dvqa_bar", "source_ids": ["nonexistent"]}]), no_mirror_edit,
                  lambda ctx: redone(ctx, "render") == 0 and redone(ctx, "select") == 1),
    "seed": (lambda r: r.update(seed=4321), no_mirror_edit,
             lambda ctx: redone(ctx, "select") == 1 and redone(ctx, "plan") == 1),
    "source_order": (lambda r: r["mixes"][STAGE2].update(sources=dict(reversed(r["mixes"][STAGE2]["sources"].items()))),
                     no_mirror_edit, lambda ctx: redone(ctx, "render") == 0 and redone(ctx, "select") == 1),
    "take": (lambda r: r["mixes"][STAGE2]["sources"]["chartqa"].update(take=6), no_mirror_edit,
             lambda ctx: redone(ctx, "render") <= 2 and redone(ctx, "select") == 1
             and redone(ctx, "shards", "demo_stage1") == 0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_incremental_rebuild_equals_clean_build(base, tmp_path, case):
    recipe_edit, mirror_edit, check = CASES[case]
    recipe = with_recipe(recipe_edit)
    incremental, clean = tmp_path / "incremental", tmp_path / "clean"
    shutil.copytree(base, incremental, symlinks=True)
    shutil.copytree(base / "mirror", clean / "mirror", symlinks=True)
    mirror_edit(incremental / "mirror", base)
    mirror_edit(clean / "mirror", base)
    ctx = run_build(incremental, recipe)
    assert check(ctx), f"{case}: reuse report {ctx.reuse}"
    run_build(clean, recipe, workers=2)
    got, want = outputs(incremental), outputs(clean)
    assert sorted(got) == sorted(want), f"{case}: file sets differ: {set(got) ^ set(want)}"
    assert [k for k in got if got[k] != want[k]] == [], case
    again = run_build(incremental, recipe)
    assert total_redone(again) == 0, f"{case}: a second rebuild must redo nothing: {again.reuse}"


def test_unchanged_rebuild_redoes_nothing(base, tmp_path):
    root = tmp_path / "again"
    shutil.copytree(base, root, symlinks=True)
    before = outputs(root)
    ctx = run_build(root, load_recipe(DEMO_RECIPE))
    assert total_redone(ctx) == 0, ctx.reuse
    stages = {r["stage"] for r in ctx.reuse}
    assert stages == {"normalize", "select", "render", "dedup", "plan", "shards", "finalize", "report"}
    assert outputs(root) == before


def test_a_hand_edited_output_is_redone_not_trusted(base, tmp_path):
    root = tmp_path / "tampered"
    shutil.copytree(base, root, symlinks=True)
    plan = root / "mixes" / STAGE2 / "plan.parquet"
    original = plan.read_bytes()
    pl.read_parquet(plan).head(3).write_parquet(plan)
    ctx = run_build(root, load_recipe(DEMO_RECIPE))
    assert redone(ctx, "plan") == 1 and plan.read_bytes() == original
    tar = sorted((root / "mixes" / STAGE2 / "shards").glob("*.tar"))[1]
    good = tar.read_bytes()
    tar.write_bytes(good[:600] + bytes([good[600] ^ 1]) + good[601:])  # same size, one bit
    ctx = run_build(root, load_recipe(DEMO_RECIPE))
    assert redone(ctx, "shards") == 1 and tar.read_bytes() == good


def test_a_mix_that_shrinks_leaves_no_stale_shard(base, tmp_path):
    root = tmp_path / "shrink"
    shutil.copytree(base, root, symlinks=True)
    shards = root / "mixes" / STAGE2 / "shards"
    before = sorted(p.name for p in shards.glob("*.tar"))
    recipe = with_recipe(lambda r: r["mixes"][STAGE2]["sources"]["llava_665k"].update(take=3))
    run_build(root, recipe)
    after = sorted(p.name for p in shards.glob("*.tar"))
    assert len(after) < len(before)
    index = pl.read_parquet(root / "mixes" / STAGE2 / "index.parquet")
    assert sorted(index["shard_name"].unique().to_list()) == after
    renders = pl.read_parquet(root / "mixes" / STAGE2 / "renders.parquet")
    cached = {p.stem for p in (root / "mixes" / STAGE2 / "render" / "cache").rglob("*.json")}
    assert cached == set(renders["render_key"].to_list()), "the render cache holds exactly what the mix uses"
