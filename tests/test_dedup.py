"""Dedup and decontamination: the phash index (`imp_data.mix.hashindex`) finds exactly the pairs brute
force finds — planted near duplicates at distance <= d all found, none above — on uniform and crowded
hash sets, through its refinement and slicing paths; the policy (`imp_data.mix.dedup`) agrees with a
plain all-pairs union-find reference, is independent of row order, and honours within/across sources,
source priority, sha256 equality and text-only rows; decontamination matches real re-encoded images on
small tables and runs before dedup. End to end on the demo: tests/test_decontamination.py.

Run: pytest tests/test_dedup.py
"""

from __future__ import annotations

import io
import random
from types import SimpleNamespace

import imagehash
import numpy as np
import polars as pl
import pytest
from PIL import Image

from imp_data.core.errors import ImpDataError
from imp_data.fixtures import pictures
from imp_data.images import hash_image
from imp_data.mix.dedup import find_contamination, find_duplicates, plan_removals, removals_from_contamination
from imp_data.mix.hashindex import HashIndex, brute_force_pairs, phash_to_uint64, phashes_to_array, popcount64

# ---- synthetic hash sets ------------------------------------------------------------------------


def flip(value: int, bits: int, rng: np.random.Generator) -> int:
    for bit in rng.choice(64, size=bits, replace=False):
        value ^= 1 << int(bit)
    return value


def uniform_with_planted(seed: int, d: int, n: int = 3000):
    """Random hashes plus 300 planted copies at distance 0..d+1; returns hashes and {pair: distance}."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    planted = {}
    targets = rng.permutation(n)[:600].reshape(300, 2)
    for a, b in targets.tolist():
        dist = int(rng.integers(0, d + 2))
        hashes[b] = flip(int(hashes[a]), dist, rng)
        planted[(min(a, b), max(a, b))] = dist
    return hashes, planted


def crowded(seed: int, n: int = 3000):
    """Identical 'blank' hashes, tight near-copy families and templates sharing their 24 high bits."""
    rng = np.random.default_rng(seed)
    blank = np.full(n // 10, rng.integers(0, 2**63), dtype=np.uint64)
    centres = rng.integers(0, 2**63, size=n // 100, dtype=np.uint64).repeat(30)
    family = np.array([flip(int(c), int(rng.integers(0, 7)), rng) for c in centres], dtype=np.uint64)
    template = rng.integers(0, 2**63, dtype=np.uint64) ^ rng.integers(0, 2**40, size=n // 3, dtype=np.uint64)
    rest = rng.integers(0, 2**63, size=n - len(blank) - len(family) - len(template), dtype=np.uint64)
    return rng.permutation(np.concatenate([blank, family, template, rest]))


def as_set(i, j):
    return set(zip(i.tolist(), j.tolist()))


def distance(p: str, q: str) -> int:
    """Hamming distance of two hex phashes, the plain way."""
    return (int(p, 16) ^ int(q, 16)).bit_count()


def triples(i, j, dist):
    return list(zip(i.tolist(), j.tolist(), dist.tolist()))


# ---- the index ----------------------------------------------------------------------------------


def test_phash_conversion_keeps_imagehash_distances():
    rng = random.Random(0)
    a = pictures.photo_image(rng)
    b = a.resize((150, 110))
    ha, hb = imagehash.phash(a), imagehash.phash(b)
    x, y = phashes_to_array([str(ha), str(hb).upper()])
    assert int(x) == phash_to_uint64(str(ha)) == int(str(ha), 16)
    assert int(popcount64(np.array([x ^ y]))[0]) == ha - hb
    assert phashes_to_array(pl.Series(["00000000000000ff"])).tolist() == [255]
    for bad in ["123", "0000000000000000f", "000000000000000g", None]:
        with pytest.raises(ImpDataError, match="16 hex digits"):
            phashes_to_array(["0000000000000000", bad])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("d", [0, 3, 4, 6])
def test_planted_pairs_found_up_to_d_and_none_above(seed, d):
    hashes, planted = uniform_with_planted(seed, d)
    index = HashIndex(hashes, d)
    i, j, dist = index.self_pairs()
    found = as_set(i, j)
    assert {p for p, k in planted.items() if k <= d} <= found
    assert not {p for p, k in planted.items() if k > d} & found
    bi, bj, bd = brute_force_pairs(hashes, d)
    assert triples(i, j, dist) == triples(bi, bj, bd)
    assert len(found) == len(i)  # each pair once, however many keys it shares


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("d", [2, 4, 5])
@pytest.mark.parametrize("bucket_pairs,slice_pairs", [(2048, 1 << 22), (0, 97)])
def test_crowded_sets_match_brute_force_through_refine_and_slices(seed, d, bucket_pairs, slice_pairs):
    hashes = crowded(seed)
    index = HashIndex(hashes, d, bucket_pairs=bucket_pairs, slice_pairs=slice_pairs)
    i, j, dist = index.self_pairs()
    bi, bj, bd = brute_force_pairs(hashes, d)
    assert triples(i, j, dist) == triples(bi, bj, bd)
    queries = np.concatenate([hashes[:300] ^ np.uint64(0b1001), crowded(seed + 10, 300)])
    qi, qj, qd = index.query(queries)
    matrix = popcount64(queries[:, None] ^ hashes[None, :])
    ei, ej = np.nonzero(matrix <= d)
    assert triples(qi, qj, qd) == triples(ei, ej, matrix[ei, ej])


def test_crowded_buckets_are_refined_and_identical_hashes_collapsed():
    rng = np.random.default_rng(3)
    template = rng.integers(0, 2**63, dtype=np.uint64) ^ rng.integers(0, 2**40, size=4000, dtype=np.uint64)
    refined, plain = HashIndex(template, 4), HashIndex(template, 4, bucket_pairs=2**62)
    assert as_set(*refined.value_pairs()[:2]) == as_set(*plain.value_pairs()[:2])
    assert refined.stats.refined_buckets > 0 and plain.stats.refined_buckets == 0
    assert refined.stats.candidates * 5 < plain.stats.candidates  # the 24 shared bits no longer make one bucket

    blank = np.full(400, 7, dtype=np.uint64)
    index = HashIndex(blank, 4)
    assert len(index.values) == 1 and len(index.value_pairs()[0]) == 0 and index.stats.candidates == 0
    i, j, dist = index.self_pairs()
    assert len(i) == 400 * 399 // 2 and (i < j).all() and (dist == 0).all()


def test_max_pairs_guard_names_the_fix():
    with pytest.raises(ImpDataError, match="lower the recipe's max_distance"):
        HashIndex(np.zeros(100, np.uint64), 4, max_pairs=1000).self_pairs()
    with pytest.raises(ImpDataError, match="max_pairs"):
        HashIndex(np.arange(2000, dtype=np.uint64), 8, max_pairs=1000).value_pairs()


# ---- the dedup policy ---------------------------------------------------------------------------

ROWS = [
    {"id": "a/1", "source": "a", "source_id": "1", "sha256": "s1", "phash": "0000000000000000"},
    {"id": "a/2", "source": "a", "source_id": "2", "sha256": "s1", "phash": "0000000000000000"},  # same bytes
    {"id": "b/1", "source": "b", "source_id": "1", "sha256": "s2", "phash": "0000000000000003"},  # near a/*
    {"id": "b/2", "source": "b", "source_id": "2", "sha256": "s3", "phash": "ffffffffffffffff"},
    {"id": "c/1", "source": "c", "source_id": "1", "sha256": "s3", "phash": "ffffffffffffffff"},  # bytes of b/2
    {"id": "c/2", "source": "c", "source_id": "2", "sha256": None, "phash": None},  # text-only
]


def frame(rows):
    return pl.DataFrame(rows, schema={"id": pl.String, "source": pl.String, "source_id": pl.String,
                                      "sha256": pl.String, "phash": pl.String})


def test_policy_within_across_priority():
    across = find_duplicates(frame(ROWS), "across_sources", 4, ["b"])
    assert across.select("id", "reason", "kept_id", "distance").rows() == [
        ("a/1", "duplicate_near", "b/1", 2), ("a/2", "duplicate_near", "b/1", 2), ("c/1", "duplicate_exact", "b/2", 0)]
    assert set(across["stage"]) == {"dedup"} and across["source_id"].to_list() == ["1", "2", "1"]
    # without a priority the first source by name keeps its copies: a keeps both of its records
    assert find_duplicates(frame(ROWS), "across_sources", 4, []).select("id", "kept_id").rows() == [
        ("b/1", "a/1"), ("c/1", "b/2")]
    within = find_duplicates(frame(ROWS), "within_source", 4, ["b"])
    assert within.select("id", "reason", "kept_id").rows() == [("a/2", "duplicate_exact", "a/1")]
    assert find_duplicates(frame(ROWS), "across_sources", 1, ["b"]).select("id").to_series().to_list() == ["c/1"]
    assert find_duplicates(frame(ROWS), "off", 4, []).height == 0
    assert find_duplicates(frame(ROWS).to_arrow(), "across_sources", 4, ["b"]).equals(across)
    with pytest.raises(ValueError, match="within_source"):
        find_duplicates(frame(ROWS), "global", 4, [])
    with pytest.raises(ImpDataError, match="'a/1' appears 2 times"):
        find_duplicates(frame(ROWS + ROWS[:1]), "within_source", 4, [])


def test_chains_form_one_group_and_sha_links_different_phashes():
    rows = [  # x/1 ~ y/1 ~ x/2 with x/1, x/2 five bits apart; z/1 has y/1's bytes but a different phash
        {"id": "x/1", "source": "x", "source_id": "1", "sha256": "p", "phash": "0000000000000000"},
        {"id": "y/1", "source": "y", "source_id": "1", "sha256": "q", "phash": "0000000000000007"},
        {"id": "x/2", "source": "x", "source_id": "2", "sha256": "r", "phash": "000000000000001f"},
        {"id": "z/1", "source": "z", "source_id": "1", "sha256": "q", "phash": "ffffffffffffffff"},
    ]
    out = find_duplicates(frame(rows), "across_sources", 3, ["y"])
    assert out.select("id", "reason", "kept_id", "distance").rows() == [
        ("x/1", "duplicate_near", "y/1", 3), ("x/2", "duplicate_near", "y/1", 2), ("z/1", "duplicate_exact", "y/1", 0)]
    within = find_duplicates(frame(rows), "within_source", 3, [])
    assert within.height == 0  # x/1 and x/2 are linked only through y/1, another source


def reference_policy(rows: list[dict], mode: str, d: int, priority: list[str]) -> dict:
    """All pairs, plain union-find over samples: the policy as the module docstring states it."""
    parent = list(range(len(rows)))

    def root(k):
        while parent[k] != k:
            k = parent[k]
        return k

    for a in range(len(rows)):
        for b in range(a + 1, len(rows)):
            ra, rb = rows[a], rows[b]
            if (ra["source"] == rb["source"]) != (mode == "within_source"):
                continue
            if ra["sha256"] == rb["sha256"] or distance(ra["phash"], rb["phash"]) <= d:
                parent[root(a)] = root(b)
    groups: dict[int, list[dict]] = {}
    for k, row in enumerate(rows):
        groups.setdefault(root(k), []).append(row)
    rank = {s: r for r, s in enumerate(priority)}
    out = {}
    for members in groups.values():
        keep = min(members, key=lambda r: (rank.get(r["source"], len(rank)), r["source"], r["id"]))
        for r in members:
            if r is keep or (mode == "across_sources" and r["source"] == keep["source"]):
                continue
            exact = r["sha256"] == keep["sha256"]
            dist = 0 if exact else distance(r["phash"], keep["phash"])
            out[r["id"]] = ("duplicate_exact" if exact else "duplicate_near", keep["id"], dist)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("mode", ["within_source", "across_sources"])
def test_policy_matches_all_pairs_reference_and_ignores_row_order(seed, mode):
    rng = np.random.default_rng(seed)
    hashes = crowded(seed, n=400)
    sources = rng.choice(["coco", "gqa", "ocr", "vg"], size=len(hashes))
    rows = [{"id": f"{s}/{k}", "source": str(s), "source_id": str(k), "sha256": f"sha-{int(h)}-{k % 2}",
             "phash": f"{int(h):016x}"} for k, (s, h) in enumerate(zip(sources, hashes))]
    priority = list(rng.permutation(["coco", "gqa", "ocr", "vg"])[: int(rng.integers(0, 4))])
    d = int(rng.integers(2, 6))
    out = find_duplicates(frame(rows), mode, d, priority)
    expected = reference_policy(rows, mode, d, priority)
    assert {r[0]: r[1:] for r in out.select("id", "reason", "kept_id", "distance").rows()} == expected
    assert len(expected) > 20  # the crowded set has plenty of groups to get wrong
    shuffled = frame(rows).sample(fraction=1.0, shuffle=True, seed=seed + 100)
    assert find_duplicates(shuffled, mode, d, priority).equals(out)


# ---- decontamination ----------------------------------------------------------------------------


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def images():
    """Real images hashed by the render decode path: three training photos (and a text-only sample); a
    benchmark set holding an exact copy of one (in two benchmarks), a resized low-quality re-encode of
    another, a slightly cropped copy of the third, and an unrelated photo."""
    rng = random.Random(5)
    photos = [pictures.photo_image(rng, 200, 150) for _ in range(4)]
    train_bytes = [jpeg(p) for p in photos[:3]]
    bench_bytes = {("textvqa", "train_images/0001.jpg"): train_bytes[0],
                   ("pope", "val2014/COCO_val2014_000000000001.jpg"): train_bytes[0],
                   ("pope", "val2014/COCO_val2014_000000000002.jpg"): jpeg(photos[1].resize((180, 135)), 60),
                   ("pope", "val2014/COCO_val2014_000000000003.jpg"): jpeg(photos[3]),
                   ("mmbench", "7"): jpeg(photos[2].crop((5, 4, 195, 146)), 70)}
    hashed = [hash_image(b) for b in train_bytes]
    train = pl.DataFrame({"id": ["textcaps/1", "coco/2", "coco/3", "chat/4"],
                          "source": ["textcaps", "coco", "coco", "chat"], "source_id": ["1", "2", "3", "4"],
                          "sha256": [h[0] for h in hashed] + [None], "phash": [h[1] for h in hashed] + [None]})
    bench = pl.DataFrame([{"benchmark": k[0], "image_name": k[1], "sha256": s, "phash": p}
                          for k, (s, p) in ((k, hash_image(v)) for k, v in bench_bytes.items())])
    return train, bench


def test_contamination_on_real_images(images):
    train, bench = images
    phash = dict(zip(train["id"], train["phash"])) | dict(zip(bench["image_name"], bench["phash"]))
    resized, cropped = distance(phash["coco/2"], phash["val2014/COCO_val2014_000000000002.jpg"]), distance(
        phash["coco/3"], phash["7"])
    others = [distance(phash[t], phash[b]) for t in ("textcaps/1", "coco/2", "coco/3")
              for b in ("val2014/COCO_val2014_000000000003.jpg",)]
    assert resized <= 2 < cropped <= 10 < min(others)  # phash shrugs off re-encoding, less so cropping
    found = find_contamination(train, bench, cropped)
    assert found.select("id", "benchmark", "image_name", "distance", "match").rows() == [
        ("coco/2", "pope", "val2014/COCO_val2014_000000000002.jpg", resized, "near"),
        ("coco/3", "mmbench", "7", cropped, "near"),
        ("textcaps/1", "pope", "val2014/COCO_val2014_000000000001.jpg", 0, "exact"),
        ("textcaps/1", "textvqa", "train_images/0001.jpg", 0, "exact")]
    below = find_contamination(train.to_arrow(), bench.to_arrow(), cropped - 1)
    assert "coco/3" not in set(below["id"]) and below.height == 3
    removals = removals_from_contamination(found, train)
    assert removals.select("id", "source_id", "stage", "reason", "kept_id").rows() == [
        ("coco/2", "2", "decontaminate", "contaminated:pope", None),
        ("coco/3", "3", "decontaminate", "contaminated:mmbench", None),
        ("textcaps/1", "1", "decontaminate", "contaminated:pope", None)]  # two exact matches: first benchmark
    assert "val2014/COCO_val2014_000000000001.jpg" in removals["detail"][2]


def test_decontamination_runs_before_dedup():
    # x is a near copy of the benchmark image and y of x, but y is 8 bits from the benchmark image: dedup
    # alone would keep x (textcaps first) and drop y; decontamination first drops x, so y stays
    train = frame([
        {"id": "textcaps/x", "source": "textcaps", "source_id": "x", "sha256": "1", "phash": "000000000000000f"},
        {"id": "ocr/y", "source": "ocr", "source_id": "y", "sha256": "2", "phash": "00000000000000ff"}])
    bench = pl.DataFrame({"benchmark": ["pope"], "image_name": ["b.jpg"], "sha256": ["3"], "phash": ["0" * 16]})
    dedup = SimpleNamespace(mode="across_sources", max_distance=4, source_priority=["textcaps"])
    drop = SimpleNamespace(benchmarks={"pope": "loc"}, max_distance=4, drop=True)
    removed, found = plan_removals(train, bench, dedup, drop)
    assert found.select("id", "distance").rows() == [("textcaps/x", 4)]
    assert removed.select("id", "reason").rows() == [("textcaps/x", "contaminated:pope")]
    report_only = SimpleNamespace(benchmarks={"pope": "loc"}, max_distance=4, drop=False)
    removed, found = plan_removals(train, bench, dedup, report_only)
    assert found.height == 1 and removed.select("id", "reason", "kept_id").rows() == [
        ("ocr/y", "duplicate_near", "textcaps/x")]
    off = SimpleNamespace(benchmarks={}, max_distance=4, drop=True)
    removed, found = plan_removals(train, None, SimpleNamespace(mode="off", max_distance=4, source_priority=[]), off)
    assert removed.height == 0 and found.height == 0
