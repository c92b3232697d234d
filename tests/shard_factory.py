"""Tiny mixes written to the shard contract (docs/design.md §4, common contract): tars + index.parquet +
shards/index.wids.json, for the loader tests and bench/loader.py.

The tar bytes come from the real writer (`imp_data.shards.writer.write_shard`: fixed mtime/uid/gid/mode,
KEY.json then KEY.jpg, member data offsets) and the images from the real renderer (`render_image`), so
what the loader reads here is what a build writes; the factory only makes up the samples and spells out
KEY.json and the index/wids files, field by field, as the contract states them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from imp_data.core.io import dumps_canonical
from imp_data.images import render_image
from imp_data.shards.writer import Member, write_shard

WORDS = "the a photo of cat dog red blue small large sits on table near window what color is it".split()


def photo_like(width: int, height: int, seed: int, *, quality: int = 90) -> bytes:
    """A JPEG that compresses like a photo: smooth gradients, a few blobs, mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, 3)[:, None, None] + rng.uniform(-0.3, 0.3, (3, 1, 1)) * (x + y)
    for _ in range(3):  # soft blobs give edges and texture at several scales
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.05, 0.35) * max(width, height)
        base += rng.uniform(-80, 80, (3, 1, 1)) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
    pixels = (base + rng.normal(0, 6, base.shape)).clip(0, 255).astype(np.uint8).transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def solid(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A lossless one-colour PNG (known pixel values after rendering)."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), rgb).save(buf, "PNG")
    return buf.getvalue()


def make_samples(n: int, *, seed: int = 0, text_only_every: int = 3, size: tuple[int, int] = (48, 32),
                 source: str = "synth") -> list[dict]:
    """`n` canonical samples (docs/design.md §3) plus their image bytes under "image_bytes" (None for text-only).

    Every `text_only_every`-th sample is text-only; answers vary in length so modality lengths differ.
    """
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        has_image = text_only_every == 0 or i % text_only_every != text_only_every - 1
        answer = " ".join(rng.choice(WORDS, int(rng.integers(1, 40))))
        question = ("<image>\n" if has_image else "") + f"Describe item {i}."
        samples.append({
            "id": f"{source}/{i}", "source": source, "source_id": str(i),
            "image": f"images/{i:06d}.jpg" if has_image else None,
            "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
            "meta": {"n": i}, "image_bytes": photo_like(*size, seed * 100_003 + i) if has_image else None,
        })
    return samples


def _text_stats(conversations: list[dict]) -> tuple[int, int]:
    """(text_chars, text_words) as the normaliser counts them: turns joined by newlines; \\S+ runs."""
    values = [t["value"] for t in conversations]
    return sum(map(len, values)) + len(values) - 1, sum(len(v.split()) for v in values)


def write_mix(mix_dir: Path, samples: list[dict], *, mix: str = "tiny", shard_size: int = 8,
              resolution: int = 32, mode: str = "pad", fill: tuple[int, int, int] = (127, 127, 127),
              quality: int = 90, location: str = "file://factory") -> pl.DataFrame:
    """Write `samples` as mix `mix` under `mix_dir` (shards/, index.parquet, shards/index.wids.json).

    Returns:
        The index (one row per sample, contract columns plus the writer's shard_size/shard_sha256).
    """
    shards_dir = mix_dir / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    parts, shardlist = [], []
    for shard, start in enumerate(range(0, len(samples), shard_size)):
        members = []
        for pos, s in enumerate(samples[start: start + shard_size], start):
            key = f"{pos:09d}"
            image = row_image = None
            if s["image_bytes"] is not None:
                r = render_image(s["image_bytes"], resolution=resolution, mode=mode, fill=fill, quality=quality)
                image = {"path": s["image"], "sha256": r.sha256, "phash": r.phash, "orig_width": r.orig_width,
                         "orig_height": r.orig_height, "width": r.width, "height": r.height, "mode": mode,
                         "fill": list(fill), "resolution": resolution}
                row_image = r
            record = {"key": key, "id": s["id"], "source": s["source"], "source_id": s["source_id"],
                      "conversations": s["conversations"], "meta": dumps_canonical(s["meta"]), "mix": mix,
                      "location": location, "image": image}  # meta as JSON text, as the shard writer
            chars, words = _text_stats(s["conversations"])
            row = {"position": pos, "id": s["id"], "source": s["source"], "source_id": s["source_id"],
                   "n_turns": len(s["conversations"]), "text_chars": chars, "text_words": words,
                   **{k: (image or {}).get(k) for k in ("sha256", "phash", "orig_width", "orig_height", "width",
                                                         "height")}}
            members.append(Member(key, dumps_canonical(record).encode("utf-8"),
                                  row_image.jpeg if row_image else None, row))
        name = f"{mix}-{shard:06d}.tar"
        part = mix_dir / "index_parts" / f"{shard:06d}.parquet"
        rows = write_shard(shards_dir / name, part, shard, members)
        parts.append(part)
        shardlist.append({"url": name, "nsamples": len(rows), "filesize": rows[0]["shard_size"],
                          "sha256": rows[0]["shard_sha256"]})
    index = pl.concat([pl.read_parquet(p) for p in parts], how="vertical")
    index.write_parquet(mix_dir / "index.parquet")
    wids = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": mix, "shardlist": shardlist}
    (shards_dir / "index.wids.json").write_text(json.dumps(wids, indent=2, sort_keys=True) + "\n")
    return index
