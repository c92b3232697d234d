"""Dedup and decontamination as a policy over a mix's rendered images.

Dedup (recipe `dedup`): exact duplicates share a sha256, near duplicates have phashes within
`max_distance`. `within_source` considers pairs inside one source, `across_sources` pairs from different
sources (the same image in two datasets) — LLaVA's several conversations about one image are kept.
Groups are connected components (union-find), so chains resolve deterministically. The winner is the
first by `source_priority` (then source name, then smallest id): within a source a group keeps only
it; across sources the winner's source keeps all its samples and the other sources' copies go. Decontamination hashes every image of
the named benchmark sets and removes (or, with `drop: false`, only reports) training samples that match
one exactly or within `max_distance`. Results never depend on input row order.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import polars as pl

from imp_data.errors import ImageError, ImpDataError
from imp_data.mix.dedup import HashIndex, phashes_to_array, popcount64
from imp_data.mix.removals import REMOVAL_COLUMNS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
CONTAMINATION_COLUMNS = {"id": pl.String, "source": pl.String, "benchmark": pl.String, "image_name": pl.String,
                         "distance": pl.Int32, "match": pl.String}


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def duplicate_removals(frame: pl.DataFrame, mode: str, max_distance: int, priority: list[str]) -> pl.DataFrame:
    """Removal rows for duplicates among `frame` (id, source, source_id, sha256, phash)."""
    frame = frame.sort("id")  # order-free: everything below depends on ids only
    n = frame.height
    if mode == "off" or n < 2:
        return pl.DataFrame(schema=REMOVAL_COLUMNS)
    sources = frame["source"].to_list()
    hashes = phashes_to_array(frame["phash"].to_list())
    i, j, _ = HashIndex(hashes, max_distance).self_pairs()
    sha = frame["sha256"].to_list()
    by_sha: dict[str, int] = {}
    exact_i, exact_j = [], []
    for k, digest in enumerate(sha):
        if digest in by_sha:
            exact_i.append(by_sha[digest])
            exact_j.append(k)
        else:
            by_sha[digest] = k
    pairs_i = np.concatenate([i, np.array(exact_i, dtype=np.int64)])
    pairs_j = np.concatenate([j, np.array(exact_j, dtype=np.int64)])
    same = np.array([sources[a] == sources[b] for a, b in zip(pairs_i, pairs_j)], dtype=bool)
    keep_pair = same if mode == "within_source" else ~same
    parent = list(range(n))
    for a, b in zip(pairs_i[keep_pair].tolist(), pairs_j[keep_pair].tolist()):
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    rank = {s: r for r, s in enumerate(priority)}
    ids = frame["id"].to_list()
    groups: dict[int, list[int]] = {}
    for k in range(n):
        groups.setdefault(_find(parent, k), []).append(k)
    rows = []
    for members in groups.values():
        if len(members) < 2:
            continue
        keep = min(members, key=lambda k: (rank.get(sources[k], len(rank)), sources[k], ids[k]))
        for k in members:
            # within one source a group keeps one sample; across sources the winning source keeps all its
            # own (LLaVA's several conversations about one image) and the other sources' copies go
            if k == keep or (mode == "across_sources" and sources[k] == sources[keep]):
                continue
            dist = int(popcount64(np.array([hashes[k] ^ hashes[keep]], dtype=np.uint64))[0])
            exact = sha[k] == sha[keep]
            rows.append({"id": ids[k], "source": sources[k], "source_id": frame["source_id"][k], "stage": "dedup",
                         "reason": "duplicate_exact" if exact else "duplicate_near",
                         "detail": f"same image as {ids[keep]}" + ("" if exact else f" (phash distance {dist})"),
                         "kept_id": ids[keep], "distance": 0 if exact else dist})
    return pl.DataFrame(rows, schema=REMOVAL_COLUMNS).sort("id")


def list_benchmark_images(location: Path):
    """(name, bytes) of every image in a folder, an archive, or a glob of archives."""
    from imp_data.fetch.archives import Archive, is_archive

    paths = [Path(p) for p in sorted(glob.glob(str(location)))] if any(c in str(location) for c in "*?[") else [location]
    if not paths or not any(p.exists() for p in paths):
        raise ImpDataError(f"{location}: benchmark image set not found — fetch it or fix decontaminate.benchmarks")
    for path in paths:
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                    yield str(f.relative_to(path)), f.read_bytes()
        elif is_archive(path):
            archive = Archive(path)
            for name in sorted(archive.names()):
                if name.lower().endswith(IMAGE_SUFFIXES):
                    yield name, archive.read(name)


def benchmark_hashes(name: str, location: Path) -> pl.DataFrame:
    from imp_data.images import hash_image

    rows = []
    for image_name, data in list_benchmark_images(location):
        try:
            sha, phash = hash_image(data)
        except ImageError:
            continue  # an unreadable benchmark image cannot contaminate anything
        rows.append({"benchmark": name, "image_name": image_name, "sha256": sha, "phash": phash})
    return pl.DataFrame(rows, schema={"benchmark": pl.String, "image_name": pl.String, "sha256": pl.String,
                                      "phash": pl.String})


def find_contamination(train: pl.DataFrame, bench: pl.DataFrame, max_distance: int) -> pl.DataFrame:
    """Every (training sample, benchmark image) match: exact sha256 or phash within max_distance."""
    if not train.height or not bench.height:
        return pl.DataFrame(schema=CONTAMINATION_COLUMNS)
    qi, bj, dist = HashIndex(phashes_to_array(bench["phash"].to_list()), max_distance).query(
        phashes_to_array(train["phash"].to_list()))
    rows = {}
    for a, b, d in zip(qi.tolist(), bj.tolist(), dist.tolist()):
        exact = train["sha256"][a] == bench["sha256"][b]
        key = (train["id"][a], bench["benchmark"][b], bench["image_name"][b])
        rows[key] = {"id": key[0], "source": train["source"][a], "benchmark": key[1], "image_name": key[2],
                     "distance": 0 if exact else int(d), "match": "exact" if exact else "near"}
    exact_sha = dict(zip(bench["sha256"].to_list(), zip(bench["benchmark"].to_list(), bench["image_name"].to_list())))
    for tid, src, digest in train.select("id", "source", "sha256").iter_rows():
        if digest in exact_sha:
            b, img = exact_sha[digest]
            rows[(tid, b, img)] = {"id": tid, "source": src, "benchmark": b, "image_name": img, "distance": 0,
                                   "match": "exact"}
    return pl.DataFrame(list(rows.values()), schema=CONTAMINATION_COLUMNS).sort(["id", "benchmark", "image_name"])


def removals_for_mix(ctx, mix: str, selected: pl.DataFrame, renders: pl.DataFrame) -> pl.DataFrame:
    """Contamination (reported to contamination.parquet, dropped per policy), then dedup of the rest."""
    from imp_data.build import local_location
    from imp_data.io import atomic_path

    spec = ctx.recipe.mixes[mix]
    frame = (renders.filter(pl.col("reason").is_null()).select("id", "sha256", "phash")
             .join(selected.select("id", "source", "source_id"), on="id"))
    removed = [pl.DataFrame(schema=REMOVAL_COLUMNS)]
    contamination = pl.DataFrame(schema=CONTAMINATION_COLUMNS)
    if spec.decontaminate.benchmarks:
        bench = pl.concat([benchmark_hashes(name, local_location(loc, ctx.data_root))
                           for name, loc in sorted(spec.decontaminate.benchmarks.items())])
        contamination = find_contamination(frame, bench, spec.decontaminate.max_distance)
        if spec.decontaminate.drop and contamination.height:
            first = contamination.sort(["id", "distance", "benchmark"]).unique("id", keep="first", maintain_order=True)
            removed.append(first.join(frame.select("id", "source_id"), on="id").select(
                "id", "source", "source_id", pl.lit("decontaminate").alias("stage"),
                (pl.lit("contaminated:") + pl.col("benchmark")).alias("reason"),
                (pl.lit("matches benchmark image ") + pl.col("image_name") + pl.lit(" (") + pl.col("match")
                 + pl.lit(")")).alias("detail"),
                pl.col("image_name").alias("kept_id"), pl.col("distance")))
            frame = frame.filter(~pl.col("id").is_in(first["id"]))
    with atomic_path(ctx.layout.mix(mix) / "contamination.parquet") as tmp:
        contamination.write_parquet(tmp)
    removed.append(duplicate_removals(frame, spec.dedup.mode, spec.dedup.max_distance, spec.dedup.source_priority))
    return pl.concat(removed, how="vertical").sort("id")
