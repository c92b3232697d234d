"""Write one WebDataset shard: deterministic bytes, atomic rename, index rows written last.

Tar headers carry fixed mtime/uid/gid/mode and empty owner names, so the same samples give the same
bytes on any machine. The tar is written under a temporary name and renamed only when complete; its
index part (per-sample member offsets, shard size and sha256) is written after the rename, so "index
part exists and matches the file" is the resume test for a shard.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from imp_data.core.io import atomic_path, file_sha256
from imp_data.core.tables import INDEX_SCHEMA

TAR_FORMAT = tarfile.USTAR_FORMAT  # keys are short: no PAX/GNU extension headers, widest compatibility



@dataclass
class Member:
    """One sample's member group: KEY.json and, when it has an image, KEY.jpg."""

    key: str
    json_bytes: bytes
    jpg_bytes: bytes | None
    row: dict  # index columns known before writing (id, source, hashes, sizes, text stats...)


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


# Every header field but name, size and checksum is constant, so a header is a template with three slots:
# the same bytes tarfile writes (tests/test_shard_writer.py compares them), at a fraction of its cost —
# tarfile's generic header code was half of shard-writing time.
_TEMPLATE = bytearray(_tarinfo("", 0).tobuf(TAR_FORMAT, "utf-8", "surrogateescape"))
_TEMPLATE[148:156] = b" " * 8  # checksum is computed with its own field as spaces
_TEMPLATE_SUM = sum(_TEMPLATE) - sum(_TEMPLATE[0:100]) - sum(_TEMPLATE[124:136])


def tar_header(name: str, size: int) -> bytes:
    """The 512-byte ustar header tarfile would write for a regular member `name` of `size` bytes."""
    raw = name.encode("utf-8")
    if len(raw) > 100 or size >= 8 ** 11:  # prefix split or base-256 size: leave it to tarfile
        return _tarinfo(name, size).tobuf(TAR_FORMAT, "utf-8", "surrogateescape")
    header = bytearray(_TEMPLATE)
    header[0:len(raw)] = raw
    header[124:136] = b"%011o\0" % size
    checksum = _TEMPLATE_SUM + sum(raw) + sum(header[124:136])
    header[148:155] = b"%06o\0" % checksum
    return bytes(header)


class _TarStream:
    """A write-only tar file whose sha256 is computed as it is written (no second read of the shard)."""

    def __init__(self, f):
        self.f, self.offset, self.sha = f, 0, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.sha.update(data)
        self.offset += len(data)

    def add(self, name: str, data: bytes) -> tuple[int, int]:
        """Append a member; return (offset of its data in the file, size)."""
        self.write(tar_header(name, len(data)))
        offset = self.offset
        self.write(data)
        if len(data) % tarfile.BLOCKSIZE:
            self.write(tarfile.NUL * (tarfile.BLOCKSIZE - len(data) % tarfile.BLOCKSIZE))
        return offset, len(data)

    def close(self) -> None:
        """End-of-archive blocks and padding to a full record, exactly as tarfile.close() writes them."""
        self.write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
        if self.offset % tarfile.RECORDSIZE:
            self.write(tarfile.NUL * (tarfile.RECORDSIZE - self.offset % tarfile.RECORDSIZE))


def shard_fingerprint(members: list[Member], recipe_inputs: dict, jpg_ids: list[str | None]) -> str:
    """What a shard is made from: every member's key and JSON bytes, the identity of each JPEG (its render
    cache key: content-addressed), the shard code version and the recipe fields the shard stage reads."""
    from imp_data.core.fingerprint import stage_fingerprint

    return stage_fingerprint("shards", recipe=recipe_inputs,
                             members=[[m.key, hashlib.sha256(m.json_bytes).hexdigest(), jpg]
                                      for m, jpg in zip(members, jpg_ids)])


def write_shard(tar_path: Path, index_part: Path, shard: int, members: list[Member],
                fingerprint: str | None = None, hashes=None) -> list[dict]:
    """Write `tar_path` then `index_part`; return the index rows. `hashes` (a FileHashes) learns the
    tar's sha256, computed on the way out, so checking the shard later needs no second read."""
    rows: list[dict] = []
    with atomic_path(tar_path) as tmp:
        with open(tmp, "wb") as f:
            tar = _TarStream(f)
            for m in members:
                json_offset, json_size = tar.add(f"{m.key}.json", m.json_bytes)
                jpg_offset = jpg_size = None
                if m.jpg_bytes is not None:
                    jpg_offset, jpg_size = tar.add(f"{m.key}.jpg", m.jpg_bytes)
                rows.append({**m.row, "key": m.key, "shard": shard, "shard_name": tar_path.name,
                             "json_offset": json_offset, "json_size": json_size,
                             "jpg_offset": jpg_offset, "jpg_size": jpg_size,
                             "json_sha256": hashlib.sha256(m.json_bytes).hexdigest(),
                             "jpg_sha256": None if m.jpg_bytes is None else hashlib.sha256(m.jpg_bytes).hexdigest()})
            tar.close()
        size, digest = tar.offset, tar.sha.hexdigest()
    if hashes is not None:
        hashes.remember(tar_path, digest)
    for row in rows:
        row["shard_size"], row["shard_sha256"], row["shard_fingerprint"] = size, digest, fingerprint
    write_index_part(index_part, rows)
    return rows


def write_index_part(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=INDEX_SCHEMA), tmp, compression="zstd")


def shard_is_complete(tar_path: Path, index_part: Path, fingerprint: str, hashes=None) -> bool:
    """True when the tar and its index part exist and agree (size, sha256), and the part says the shard
    was made from exactly `fingerprint` (what the plan now says) — safe to skip. With `hashes` (a
    FileHashes) an unchanged tar is not read again."""
    if not (tar_path.is_file() and index_part.is_file()):
        return False
    try:
        part = pq.read_table(index_part, columns=["shard_size", "shard_sha256", "shard_fingerprint"]).to_pydict()
    except Exception:  # a corrupt or older index part means: rebuild the shard
        return False
    if not part["shard_size"] or part["shard_fingerprint"][0] != fingerprint:
        return False
    if part["shard_size"][0] != tar_path.stat().st_size:
        return False
    return (hashes.sha256(tar_path) if hashes is not None else file_sha256(tar_path)) == part["shard_sha256"][0]
