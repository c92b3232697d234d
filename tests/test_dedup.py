"""Dedup and decontamination: the hash index finds exactly the pairs brute force finds (planted near
duplicates at distance <= d all found, none above); the policy is order-free and honours within/across
and source priority; with the TextCaps rule off, decontamination finds every TextCaps/TextVQA overlap,
with it on the report says none remain; the removal table reconciles with stats and the shard index.

Run: pytest tests/test_dedup.py
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import yaml

from imp_data.build import BuildContext, build
from imp_data.mix.dedup import HashIndex, brute_force_pairs, popcount64
from imp_data.mix.dedup_policy import duplicate_removals
from imp_data.recipe import parse_recipe
from tests.conftest import DEMO_RECIPE


def planted(seed: int, n: int = 4000, d: int = 4):
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**63, size=n, dtype=np.uint64) << np.uint64(1)
    planted_pairs = {}
    for k in range(300):
        a, b = rng.choice(n, size=2, replace=False)
        dist = int(rng.integers(0, d + 3))
        value = int(hashes[a])
        for bit in rng.choice(64, size=dist, replace=False):
            value ^= 1 << int(bit)
        hashes[b] = value
        planted_pairs[(min(a, b), max(a, b))] = dist
    return hashes


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("d", [0, 3, 4, 6])
def test_index_recall_is_exact(seed, d):
    hashes = planted(seed)
    i, j, dist = HashIndex(hashes, d).self_pairs()
    assert set(zip(i.tolist(), j.tolist())) == brute_force_pairs(hashes, d)
    assert np.array_equal(dist, popcount64(hashes[i] ^ hashes[j])) and (dist <= d).all()
    queries = hashes[:200] ^ np.uint64(0b101)
    qi, qj, qd = HashIndex(hashes, d).query(queries)
    expected = {(a, b) for a in range(200) for b in np.flatnonzero(popcount64(queries[a] ^ hashes) <= d).tolist()}
    assert set(zip(qi.tolist(), qj.tolist())) == expected


def frame(rows):
    return pl.DataFrame(rows, schema={"id": pl.String, "source": pl.String, "source_id": pl.String,
                                      "sha256": pl.String, "phash": pl.String})


ROWS = [
    {"id": "a/1", "source": "a", "source_id": "1", "sha256": "s1", "phash": "0000000000000000"},
    {"id": "a/2", "source": "a", "source_id": "2", "sha256": "s1", "phash": "0000000000000000"},  # same image, same source
    {"id": "b/1", "source": "b", "source_id": "1", "sha256": "s2", "phash": "0000000000000003"},  # near copy in b
    {"id": "b/2", "source": "b", "source_id": "2", "sha256": "s3", "phash": "ffffffffffffffff"},
    {"id": "c/1", "source": "c", "source_id": "1", "sha256": "s3", "phash": "ffffffffffffffff"},  # exact copy of b/2
]


def test_policy_modes_priority_and_order():
    across = duplicate_removals(frame(ROWS), "across_sources", 4, ["b"])
    assert across.select("id", "reason", "kept_id").rows() == [
        ("a/1", "duplicate_near", "b/1"), ("a/2", "duplicate_near", "b/1"), ("c/1", "duplicate_exact", "b/2")]
    within = duplicate_removals(frame(ROWS), "within_source", 4, [])
    assert within.select("id", "reason", "kept_id").rows() == [("a/2", "duplicate_exact", "a/1")]
    assert duplicate_removals(frame(ROWS), "off", 4, []).height == 0
    shuffled = frame(ROWS).sample(fraction=1.0, shuffle=True, seed=7)
    assert duplicate_removals(shuffled, "across_sources", 4, ["b"]).equals(across)


def decontam_build(tmp_path, demo_root, textcaps_rule: bool):
    recipe = yaml.safe_load(DEMO_RECIPE.read_text())
    mix = recipe["mixes"]["demo_stage2"]
    if not textcaps_rule:
        mix["sources"]["llava_665k"]["drop"] = []
    recipe["max_reject_rate"] = 1.0
    data = tmp_path / ("on" if textcaps_rule else "off")
    data.mkdir()
    (data / "mirror").symlink_to(demo_root / "mirror", target_is_directory=True)
    ctx = BuildContext(recipe=parse_recipe(recipe), data_root=data, progress=False)
    return ctx, build(ctx, mixes=["demo_stage2"])["mixes"]["demo_stage2"]


def test_decontamination_finds_textcaps_overlap_and_reconciles(demo_build, tmp_path):
    demo_root, _ = demo_build
    ctx, stats = decontam_build(tmp_path, demo_root, textcaps_rule=False)
    normalized = pl.read_parquet(ctx.layout.normalized("llava_665k"))
    textcaps = set(normalized.filter(pl.col("image").str.starts_with("textvqa/"))["id"])
    found = pl.read_parquet(ctx.layout.mix("demo_stage2") / "contamination.parquet")
    textvqa = found.filter(pl.col("benchmark") == "textvqa")
    assert set(textvqa["id"]) == textcaps and set(textvqa["match"]) == {"exact"}
    assert stats["contamination"]["benchmarks"]["textvqa"] == {"found": 3, "remaining": 0, "dropped": 3, "exact": 3}
    assert stats["contamination"]["benchmarks"]["pope"]["found"] == 3  # re-encoded, resized, cropped COCO copies
    # the removal table reconciles with stats and the shard index
    removals = pl.read_parquet(ctx.layout.removals("demo_stage2"))
    index = pl.read_parquet(ctx.layout.index("demo_stage2"))
    assert set(removals["id"]).isdisjoint(set(index["id"]))
    for source, entry in stats["sources"].items():
        counted = {k: v for k, v in entry["dropped"].items() if k.startswith(("contaminated:", "duplicate_"))}
        actual = dict(removals.filter(pl.col("source") == source).group_by("reason").len().rows())
        assert counted == actual, source

    ctx_on, stats_on = decontam_build(tmp_path, demo_root, textcaps_rule=True)
    assert "textvqa" not in stats_on["contamination"]["benchmarks"]
    assert stats_on["contamination"]["remaining"] == 0
    assert "**0 contaminated samples remain in the shards.**" in ctx_on.layout.report("demo_stage2").read_text()
