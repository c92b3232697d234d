"""Export a built mix in LLaVA's own format (one JSON list + an image folder), for interop with any
LLaVA-family trainer. Images are the rendered shard JPEGs; paths are `images/<key>.jpg`, never ids."""

from __future__ import annotations

import json
from pathlib import Path

from imp_data.io import atomic_path
from imp_data.shards.reader import iter_tar_samples


def export_llava(mix_dir: Path, out_dir: Path) -> Path:
    """Write `out_dir/<mix>.json` and `out_dir/images/`; returns the JSON path."""
    from imp_data.shards.assemble import read_index

    index = read_index(mix_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for name in index["shard_name"].unique(maintain_order=True).to_list():
        for key, record, jpg in iter_tar_samples(mix_dir / "shards" / name):
            out = {"id": record["id"], "conversations": record["conversations"]}
            if jpg is not None:
                rel = f"images/{key}.jpg"
                (out_dir / rel).write_bytes(jpg)
                out["image"] = rel
            records.append(out)
    mix = mix_dir.name
    path = out_dir / f"{mix}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return path
