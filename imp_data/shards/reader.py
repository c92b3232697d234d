"""Read shards back and check them against the index: the write-then-read half of every writer test,
and what `imp-data validate` and the Dagster checks run on a built mix."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

from imp_data.core.errors import ShardError
from imp_data.core.io import file_sha256, read_table
from imp_data.core.layout import MixDir


def iter_tar_samples(path: Path) -> Iterator[tuple[str, dict, bytes | None]]:
    """Yield (key, KEY.json as dict, KEY.jpg bytes or None) in tar order; ShardError names a corrupt file."""
    current_key, record, jpg = None, None, None
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, _, ext = info.name.rpartition(".")
                data = tar.extractfile(info).read()
                if key != current_key:
                    if current_key is not None:
                        yield current_key, record, jpg
                    current_key, record, jpg = key, None, None
                if ext == "json":
                    try:
                        record = json.loads(data)
                    except json.JSONDecodeError as err:
                        raise ShardError(f"{path}: key {key}: member {info.name} is not valid JSON ({err.msg} at "
                                         f"byte {err.pos})") from None
                    except UnicodeDecodeError as err:
                        raise ShardError(f"{path}: key {key}: member {info.name} is not UTF-8 (byte "
                                         f"0x{data[err.start]:02x} at offset {err.start})") from None
                elif ext == "jpg":
                    jpg = data
            if current_key is not None:
                yield current_key, record, jpg
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ShardError(f"{path}: corrupt or truncated tar ({err})") from None


def verify_mix(mix_dir: Path, *, checksums: bool = True) -> list[str]:
    """Problems found comparing index.parquet, index.wids.json and the tars (empty list = consistent)."""
    problems: list[str] = []
    index_path = MixDir(mix_dir).index
    wids_path = MixDir(mix_dir).wids
    if not index_path.is_file():
        return [f"{index_path}: missing — build the mix first"]
    index = read_table(index_path)
    wids = json.loads(wids_path.read_text()) if wids_path.is_file() else None
    if wids is None:
        problems.append(f"{wids_path}: missing")
    per_shard = {name: frame for (name,), frame in index.partition_by("shard_name", as_dict=True).items()}
    listed = {s["url"]: s for s in (wids or {}).get("shardlist", [])}
    if wids is not None and set(listed) != set(per_shard):
        problems.append(f"{wids_path}: shard list differs from index.parquet")
    for name, rows in sorted(per_shard.items()):
        tar = MixDir(mix_dir).shards / name
        if not tar.is_file():
            problems.append(f"{tar}: listed in the index but missing")
            continue
        size = tar.stat().st_size
        if size != rows["shard_size"][0]:
            problems.append(f"{tar}: size {size} != index {rows['shard_size'][0]}")
        if checksums and file_sha256(tar) != rows["shard_sha256"][0]:
            problems.append(f"{tar}: sha256 differs from the index")
        if name in listed and listed[name]["nsamples"] != rows.height:
            problems.append(f"{wids_path}: {name} nsamples {listed[name]['nsamples']} != index rows {rows.height}")
        try:
            keys = [key for key, _, _ in iter_tar_samples(tar)]
        except ShardError as err:
            problems.append(str(err))
            continue
        if keys != rows["key"].to_list():
            problems.append(f"{tar}: member keys differ from the index ({len(keys)} in tar, {rows.height} in index)")
        with open(tar, "rb") as f:  # the recorded offsets must point at the members' data
            for row in rows.head(3).to_dicts():
                f.seek(row["json_offset"])
                if json.loads(f.read(row["json_size"])).get("key") != row["key"]:
                    problems.append(f"{tar}: json_offset of key {row['key']} does not point at its KEY.json")
    return problems
