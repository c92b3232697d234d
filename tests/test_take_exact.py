"""Exact take-N under attrition (issue 17): a source of 40 records of which 12 have broken images yields
exactly N for every N up to its 28 usable records, replacing each loss from the seeded order, and falls
short by exactly the missing count beyond that; two builds give identical bytes, the shards hold no broken
image, and every record is accounted for (taken, rejected with its reason, or not sampled).

Run: pytest tests/test_take_exact.py
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from imp_data.audit.quality import end_counts
from imp_data.build import build
from imp_data.core.context import BuildContext
from imp_data.core.recipe import parse_recipe

N_RECORDS, BROKEN = 40, 12


def write_source(root: Path) -> set[str]:
    """LCS-558K's layout (a JSON list + image folder); returns the ids whose image is broken."""
    src = root / "src"
    (src / "images").mkdir(parents=True)
    records, broken = [], set()
    for i in range(N_RECORDS):
        rid = f"{i:09d}"
        name = f"images/{rid}.jpg"
        buf = io.BytesIO()
        Image.new("RGB", (24 + i, 16), (i * 6 % 256, 90, 200 - i)).save(buf, "JPEG")
        data = buf.getvalue()
        if i % 10 in (1, 4, 7):  # 12 of 40: truncated, zero-byte and not-an-image
            data = {1: data[: len(data) // 3], 4: b"", 7: b"GIF89a nonsense"}[i % 10]
            broken.add(f"lcs/{rid}")
        (src / name).write_bytes(data)
        records.append({"id": rid, "image": name, "conversations": [
            {"from": "human", "value": "Describe the photo.\n<image>"}, {"from": "gpt", "value": f"picture {i}"}]})
    (src / "blip_laion_cc_sbu_558k.json").write_text(json.dumps(records))
    return broken


def recipe(take: int, seed: int = 7):
    return parse_recipe({
        "name": "attrition", "seed": seed, "render": {"resolution": 16}, "shard_size": 8, "max_reject_rate": 1.0,
        "sources": {"lcs": {"adapter": "llava_pretrain", "location": "src",
                            "images": [{"prefix": "", "location": "src"}]}},
        "mixes": {"m": {"stage": 1, "sources": {"lcs": {"take": take}}}},
    })


def run(root: Path, take: int) -> dict:
    ctx = BuildContext(recipe=recipe(take), data_root=root, progress=False)
    return build(ctx)["mixes"]["m"], ctx


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, set[str]]:
    root = tmp_path_factory.mktemp("attrition")
    return root, write_source(root)


@pytest.mark.parametrize("take", [5, 20, 28, 33, 40])
def test_exactly_n_whenever_n_usable_records_exist(source, tmp_path, take):
    base, broken = source
    root = tmp_path / "d"
    (root).mkdir()
    (root / "src").symlink_to(base / "src", target_is_directory=True)
    stats, ctx = run(root, take)
    usable = N_RECORDS - BROKEN
    entry = stats["sources"]["lcs"]
    assert entry["taken"] == min(take, usable)
    assert entry["shortfall"] == max(0, take - usable)
    index = pl.read_parquet(root / "mixes" / "m" / "index.parquet")
    assert index.height == min(take, usable) and not set(index["id"]) & broken
    rejects = pl.read_parquet(root / "mixes" / "m" / "rejects.parquet")
    rendered_broken = set(rejects.filter(pl.col("stage") == "render")["id"])
    assert rendered_broken <= broken and index.height + rejects.height == N_RECORDS
    unsampled = rejects.filter(pl.col("reason") == "not_sampled").height
    assert unsampled == N_RECORDS - index.height - len(rendered_broken)
    if take >= usable:
        assert rendered_broken == broken and unsampled == 0  # every record was tried
    [row] = end_counts(ctx, "m")
    assert row["ok"] and row["shortfall"] == max(0, take - usable), row["why"]
    # work stays proportional: only the N taken plus the losses were rendered
    renders = pl.read_parquet(root / "mixes" / "m" / "renders.parquet")
    assert renders.height == index.height + len(rendered_broken)


def test_replacements_follow_the_seeded_order_and_builds_are_identical(source, tmp_path):
    base, _ = source
    roots = []
    for name in ("a", "b"):
        root = tmp_path / name
        root.mkdir()
        (root / "src").symlink_to(base / "src", target_is_directory=True)
        run(root, 20)
        roots.append(root)
    files = [{p.relative_to(r).as_posix(): p.read_bytes() for p in sorted((r / "mixes").rglob("*")) if p.is_file()}
             for r in roots]
    assert files[0] == files[1]
    # a bigger take keeps every earlier pick (the prefix property holds through the replacements)
    small = set(pl.read_parquet(roots[0] / "mixes" / "m" / "index.parquet")["id"])
    bigger = tmp_path / "c"
    bigger.mkdir()
    (bigger / "src").symlink_to(base / "src", target_is_directory=True)
    run(bigger, 25)
    assert small <= set(pl.read_parquet(bigger / "mixes" / "m" / "index.parquet")["id"])
