"""Object storage (S3 and anything fsspec speaks) for built mixes: publish, list, stream.

A mix is built on local disk (rendering wants fast random I/O) and published to a bucket; training
nodes stream the shards from there. Publishing is idempotent and safe to interrupt: every object is a
single PUT (atomic on S3), objects whose size and sha256 already match are skipped, and the manifest
`_published.json` is written last, so a reader that finds it finds a complete mix.

    imp-data publish DATA/mixes/imp_1m s3://bucket/mixes/imp_1m
    webdataset.WebDataset(shard_urls("s3://bucket/mixes/imp_1m"))   # pipe: URLs via `imp-data cat`
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import fsspec

from imp_data.core.errors import ImpDataError
from imp_data.core.io import file_sha256
from imp_data.core.layout import MixDir

MANIFEST = "_published.json"
RELATIVE = MixDir(Path())  # a published mix mirrors the mix folder: its names, relative to the prefix


def publish_mix(mix_dir: str | Path, url: str, **storage_options) -> dict:
    """Upload a built mix to `url` (a prefix); returns {"uploaded": n, "skipped": n}. An `hf://datasets/...`
    URL goes through the Hub's commit API instead (imp_data.publish.hub)."""
    if url.startswith("hf://"):
        from imp_data.publish.hub import publish_to_hub

        return publish_to_hub(mix_dir, url, **storage_options)
    mix_dir = Path(mix_dir)
    if not MixDir(mix_dir).index.is_file():
        raise ImpDataError(f"{mix_dir}: not a built mix (no index.parquet) — run `imp-data build` first")
    fs, root = fsspec.core.url_to_fs(url.rstrip("/"), **storage_options)
    old = {}
    if fs.exists(f"{root}/{MANIFEST}"):
        old = json.loads(fs.cat_file(f"{root}/{MANIFEST}"))["files"]
    files, counts = {}, {"uploaded": 0, "skipped": 0}
    for path in MixDir(mix_dir).published_files():
        rel = str(path.relative_to(mix_dir))
        entry = {"size": path.stat().st_size, "sha256": file_sha256(path)}
        files[rel] = entry
        target = f"{root}/{rel}"
        if old.get(rel) == entry and fs.exists(target) and fs.size(target) == entry["size"]:
            counts["skipped"] += 1
            continue
        fs.put_file(str(path), target)
        counts["uploaded"] += 1
    fs.pipe_file(f"{root}/{MANIFEST}",
                 json.dumps({"mix": mix_dir.name, "files": files}, indent=1, sort_keys=True).encode())
    return counts


def shard_urls(url: str, *, via_pipe: bool = True, **storage_options) -> list[str]:
    """Shard URLs of a published mix, in order. `via_pipe` turns them into `pipe:` commands that plain
    `webdataset.WebDataset` can open (it has no handler for s3://)."""
    fs, root = fsspec.core.url_to_fs(url.rstrip("/"), **storage_options)
    try:
        wids = json.loads(fs.cat_file(f"{root}/{RELATIVE.wids.as_posix()}"))
    except FileNotFoundError:
        raise ImpDataError(f"{url}: no {RELATIVE.wids.as_posix()} — publish the mix first") from None
    base = url.rstrip("/")
    urls = [f"{base}/{RELATIVE.shards.as_posix()}/{s['url']}" for s in wids["shardlist"]]
    if not via_pipe:
        return urls
    return [f"pipe:{shlex.quote(sys.executable)} -m imp_data.publish.remote {shlex.quote(u)}" for u in urls]


def cat(url: str) -> None:
    """Stream one object to stdout (what the `pipe:` URLs run)."""
    with fsspec.open(url, "rb") as f:
        out = sys.stdout.buffer
        for block in iter(lambda: f.read(1 << 20), b""):
            out.write(block)
        out.flush()


if __name__ == "__main__":
    cat(sys.argv[1])
