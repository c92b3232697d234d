"""Export a built mix in LLaVA's own format (one JSON list + an image folder), for interop with any
LLaVA-family trainer. Images are the rendered shard JPEGs; paths are `images/<key>.jpg`, never ids.

Everything is read through index.parquet — each member at its recorded offset, checked against its
recorded sha256 — and every name written comes from the index's keys. Tar member names are never used:
a shard with a crafted member `../../X.jpg` exports exactly what the index lists, and nothing lands
outside the output folder (`imp_data.core.paths.contained`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import polars as pl

from imp_data.core.errors import ShardError
from imp_data.core.io import atomic_path
from imp_data.core.layout import MixDir
from imp_data.core.paths import contained, name_part

KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what a key may be to become a file name (plan keys are digits)


def _member(f, shard: Path, key: str, ext: str, offset, size, sha256: str | None) -> bytes:
    """The bytes the index says `key.ext` has; ShardError naming shard and key when they are not there."""
    if offset is None or size is None or offset < 0 or size < 0:
        raise ShardError(f"{shard}: key {key}: index.parquet has no offset for {key}.{ext}")
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise ShardError(f"{shard}: key {key}: {key}.{ext} ends past the end of the shard (truncated)")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ShardError(f"{shard}: key {key}: {key}.{ext} differs from its sha256 in index.parquet")
    return data


def _samples(mix_dir: Path, index: pl.DataFrame):
    """(key, record, jpg bytes or None) in index order, each member read at its offset and verified."""
    cols = set(index.columns)
    for (name,), rows in index.partition_by("shard_name", as_dict=True, maintain_order=True).items():
        shard = contained(MixDir(mix_dir).shards, name_part(str(name), "shard name"))
        with open(shard, "rb") as f:
            for r in rows.iter_rows(named=True):
                key = str(r["key"])
                if not KEY_RE.fullmatch(key):
                    raise ShardError(f"{mix_dir / 'index.parquet'}: key {key!r} is not a sample key")
                raw = _member(f, shard, key, "json", r["json_offset"], r["json_size"],
                              r["json_sha256"] if "json_sha256" in cols else None)
                try:
                    record = json.loads(raw)
                except ValueError as err:
                    raise ShardError(f"{shard}: key {key}: {key}.json is not valid JSON ({err})") from None
                if not isinstance(record, dict) or record.get("key") != key:
                    raise ShardError(f"{shard}: key {key}: the index's offsets do not point at this sample's JSON")
                jpg = None
                if r["jpg_offset"] is not None and r["jpg_offset"] >= 0:
                    jpg = _member(f, shard, key, "jpg", r["jpg_offset"], r["jpg_size"],
                                  r["jpg_sha256"] if "jpg_sha256" in cols else None)
                yield key, record, jpg


def export_llava(mix_dir: Path, out_dir: Path) -> Path:
    """Write `out_dir/<mix>.json` and `out_dir/images/`; returns the JSON path."""
    from imp_data.shards.assemble import read_index

    index = read_index(mix_dir)
    images = contained(out_dir, "images")
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for key, record, jpg in _samples(mix_dir, index):
        out = {"id": record["id"], "conversations": record["conversations"]}
        if jpg is not None:
            contained(images, f"{key}.jpg").write_bytes(jpg)
            out["image"] = f"images/{key}.jpg"
        records.append(out)
    path = contained(out_dir, f"{name_part(Path(mix_dir).resolve().name, 'mix')}.json")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return path
