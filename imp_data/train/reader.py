"""Random access to a built mix's samples: `index.parquet`'s member offsets, read and verified.

The one design choice: samples are read by the index's byte offsets (wids-like) instead of streaming the
tars. It is what lets the loader (`imp_data.train.data`) split samples rather than shards across
ranks x workers and resume from one integer.

Training trusts nothing it did not verify: every member read is hashed and compared with the index
(json_sha256 / jpg_sha256, written by the shard writer) before use, so a flipped letter or a few
overwritten JPEG bytes — which parse and decode fine — are a ShardError naming the shard and key, not a
silently wrong sample. The bytes are already in memory from the pread, so this costs a hash, not a read.
`verify=False` (`imp-data train --trust-shards`) skips it for storage that is trusted end to end.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imp_data.core.errors import ShardError
from imp_data.core.layout import MixDir
from imp_data.train.pixels import decode_image

INDEX_COLUMNS = ["key", "shard_name", "json_offset", "json_size", "jpg_offset", "jpg_size", "width", "height",
                 "text_words"]
HASH_COLUMNS = ["json_sha256", "jpg_sha256"]  # hex sha256 of each member's bytes (jpg: null without an image)
FIX = "rebuild the mix with `imp-data build RECIPE` (it rewrites shards that differ from the index)"


@dataclass
class ShardIndex:
    """The columns of `index.parquet` the loader needs, as flat arrays (cheap to send to workers)."""

    shards_dir: Path
    keys: np.ndarray  # str, per position
    shard: np.ndarray  # int32 index into `names`
    names: list[str]
    json_offset: np.ndarray
    json_size: np.ndarray
    jpg_offset: np.ndarray  # -1 when the sample has no image
    jpg_size: np.ndarray
    width: np.ndarray  # rendered size, -1 when unknown
    height: np.ndarray
    text_words: np.ndarray
    filesize: dict[str, int]  # from shards/index.wids.json; empty when it is missing
    json_sha256: np.ndarray | None = None  # uint8 [n, 32] raw digests; None when not verifying
    jpg_sha256: np.ndarray | None = None  # all zeros where there is no image

    @classmethod
    def read(cls, mix_dir: Path, *, verify: bool = True) -> ShardIndex:
        """The index of `mix_dir`; with `verify`, its per-member hashes too (a mix without them is refused)."""
        import polars as pl  # here, not at the top: the GPU check (bench/gpu_check.py) runs without polars

        files = MixDir(mix_dir)
        path = files.index
        if not path.is_file():
            raise ShardError(f"{path}: no shard index — build the mix first (imp-data build RECIPE)")
        schema = pl.read_parquet_schema(path)
        missing = [c for c in HASH_COLUMNS if c not in schema]
        if verify and missing:
            raise ShardError(f"{path}: no per-member sha256 ({', '.join(missing)}): the mix was built by an older "
                             f"imp-data — {FIX}, or skip verification on trusted storage (imp-data train "
                             "--trust-shards, train.trust_shards: true)")
        frame = pl.read_parquet(path, columns=INDEX_COLUMNS + (HASH_COLUMNS if verify else []))
        names = frame["shard_name"].unique(maintain_order=True)
        col = lambda c, fill=-1: frame[c].fill_null(fill).to_numpy().astype(np.int64)  # noqa: E731
        wids = files.wids
        listed = json.loads(wids.read_text())["shardlist"] if wids.is_file() else []
        index = cls(shards_dir=files.shards, keys=frame["key"].to_numpy(),
                    shard=frame["shard_name"].cast(pl.Enum(names)).to_physical().to_numpy().astype(np.int32),
                    names=names.to_list(), json_offset=col("json_offset"), json_size=col("json_size"),
                    jpg_offset=col("jpg_offset"), jpg_size=col("jpg_size", 0), width=col("width"),
                    height=col("height"), text_words=col("text_words", 0),
                    filesize={s["url"]: s["filesize"] for s in listed})
        if verify:
            index.json_sha256 = _digests(frame, "json_sha256", pl.lit(True), path)
            index.jpg_sha256 = _digests(frame, "jpg_sha256", pl.col("jpg_offset").is_not_null(), path)
        return index

    def __len__(self) -> int:
        return len(self.keys)


def _digests(frame, column: str, needed, path: Path) -> np.ndarray:
    """Hex digests -> uint8 [n, 32] (compact to send to workers; rows without the member stay zero)."""
    import polars as pl

    bad = frame.filter(needed & ~pl.col(column).str.contains(r"^[0-9a-f]{64}$").fill_null(False))
    if bad.height:
        raise ShardError(f"{path}: {bad.height} row(s) without a valid {column} (e.g. key {bad['key'][0]}) — {FIX}")
    raw = frame[column].fill_null("0" * 64).str.decode("hex").to_list()
    return np.frombuffer(b"".join(raw), np.uint8).reshape(-1, 32)


class CorruptSample(Exception):
    """One sample could not be read; `ShardReader.read` raises it, the loader raises or skips."""


class ShardReader:
    """Random access to samples by position: one read-only descriptor per shard, opened on first use and
    kept for the life of the process (each DataLoader worker opens its own). Members are verified whenever
    the index was read with its hashes (`ShardIndex.read(verify=True)`), so the choice is made once."""

    def __init__(self, index: ShardIndex):
        self.index, self.verify = index, index.json_sha256 is not None
        self.fds: dict[int, int] = {}
        self.bad: dict[int, str] = {}  # shards that failed to open, with why: every sample in them is skipped

    def __getstate__(self) -> dict:  # descriptors do not travel to worker processes
        return {**self.__dict__, "fds": {}}

    def _fd(self, shard: int) -> int:
        fd = self.fds.get(shard)
        if fd is None:
            if shard not in self.bad:
                try:
                    fd = self.fds[shard] = self._open(self.index.names[shard])
                except CorruptSample as err:
                    self.bad[shard] = str(err)
            if fd is None:
                raise CorruptSample(self.bad[shard])
        return fd

    def _open(self, name: str) -> int:
        path = self.index.shards_dir / name
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise CorruptSample("the shard is missing (cannot open it: no such file)") from None
        except OSError as err:
            raise CorruptSample(f"cannot open the shard ({err.strerror})") from None
        size, expected = os.fstat(fd).st_size, self.index.filesize.get(name)
        problem = "the shard is empty (0 bytes)" if size == 0 else None
        if size and expected is not None and size != expected:
            problem = f"shard truncated or altered: {size} bytes, index.wids.json says {expected}"
        if problem:
            os.close(fd)
            raise CorruptSample(problem)
        return fd

    def _pread(self, pos: int, start: int, end: int) -> memoryview:
        data = os.pread(self._fd(int(self.index.shard[pos])), end - start, start)
        if len(data) != end - start:
            raise CorruptSample(f"truncated: the member at byte {start} ends past the end of the file")
        return memoryview(data)

    def _check(self, pos: int, ext: str, member: memoryview) -> None:
        """Compare a member's bytes with its sha256 in the index (when verifying)."""
        want = self.index.json_sha256 if ext == "json" else self.index.jpg_sha256
        if self.verify and hashlib.sha256(member).digest() != want[pos].tobytes():
            raise CorruptSample(f"member {self.index.keys[pos]}.{ext} differs from its sha256 in index.parquet "
                                "(altered since the build)")

    def _record(self, pos: int, member: memoryview) -> dict:
        """KEY.json parsed, and checked to be this sample's."""
        try:
            record = json.loads(member.tobytes())
        except (ValueError, UnicodeDecodeError) as err:
            raise CorruptSample(f"KEY.json is not valid JSON ({err})") from None
        if not isinstance(record, dict) or record.get("key") != self.index.keys[pos]:
            raise CorruptSample("the index's offsets do not point at this sample's KEY.json")
        return record

    def read(self, pos: int) -> dict:
        """The raw sample at `pos`: {"key", "json", "pixel_values" (or None)}; CorruptSample on bad bytes."""
        ix = self.index
        start, n, jpg = int(ix.json_offset[pos]), int(ix.json_size[pos]), int(ix.jpg_offset[pos])
        # KEY.jpg follows KEY.json in the tar: one pread covers both members
        data = self._pread(pos, start, jpg + int(ix.jpg_size[pos]) if jpg >= 0 else start + n)
        self._check(pos, "json", data[:n])  # both members hashed before anything parses them
        if jpg >= 0:
            self._check(pos, "jpg", data[jpg - start:])
        record = self._record(pos, data[:n])
        pixels = None
        if jpg >= 0:
            try:
                pixels = decode_image(data[jpg - start:])
            except (OSError, ValueError, SyntaxError) as err:  # PIL's decode errors
                raise CorruptSample(f"KEY.jpg does not decode ({err})") from None
            want = (int(ix.height[pos]), int(ix.width[pos]))
            if want[0] >= 0 and tuple(pixels.shape[1:]) != want:
                raise CorruptSample(f"KEY.jpg is {tuple(pixels.shape[1:])}, the index says {want}")
        return {"key": str(ix.keys[pos]), "json": record, "pixel_values": pixels}

    def read_json(self, pos: int) -> dict:
        """KEY.json alone, verified as `read` does: what a sample says, without reading its image."""
        start, n = int(self.index.json_offset[pos]), int(self.index.json_size[pos])
        data = self._pread(pos, start, start + n)
        self._check(pos, "json", data)
        return self._record(pos, data)

    def describe(self, pos: int, err: CorruptSample) -> str:
        """One line: the shard, the key, what is wrong and what to do."""
        ix = self.index
        return (f"{ix.shards_dir / ix.names[ix.shard[pos]]}: sample {ix.keys[pos]}: {err} — {FIX}; "
                f"`imp-data validate {ix.shards_dir.parent}` lists every bad shard")

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
