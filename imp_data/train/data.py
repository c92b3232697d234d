"""Stream a mix's shards for training, split by SAMPLE across ranks x workers, resumable mid-epoch.

The loader is a visible list of stages (open_clip):

    sample_order(seed, epoch, rank)       pure function; pad + stride per rank     (sampler.py)
    -> batches of batch_size              batch i of this rank
    -> DataLoader workers                 deal whole batches round-robin: disjoint, equal shares
    -> ShardReader.read                   pread KEY.json + KEY.jpg at index.parquet's byte offsets,
                                          each member checked against its sha256 in index.parquet
    -> decode_image                       JPEG -> uint8 [3, H, W] (the model normalises: normalize_pixels)
    -> encode                             tokenise + mask; None drops the sample (counted)
    -> collate                            one batch

The one design choice: random access by the index's member offsets (wids-like) instead of streaming tars.
It is what lets samples rather than shards be split across ranks x workers, and it makes the loader's
position one integer (the next batch), so `state_dict()` / `load_state_dict()` resume exactly. Shards are
already rendered at resolution, so decoding is the only image work left.

Training trusts nothing it did not verify: every member read is hashed and compared with the index
(json_sha256 / jpg_sha256, written by the shard writer) before use, so a flipped letter or a few
overwritten JPEG bytes — which parse and decode fine — are a ShardError naming the shard and key, not a
silently wrong sample. The bytes are already in memory from the pread, so this costs a hash, not a read.
`verify=False` (`imp-data train --trust-shards`) skips it for storage that is trusted end to end.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imp_data.core.errors import ImpDataError, ShardError
from imp_data.train.sampler import modality_lengths, sample_order

log = logging.getLogger(__name__)
ON_CORRUPT = ("raise", "skip")
INDEX_COLUMNS = ["key", "shard_name", "json_offset", "json_size", "jpg_offset", "jpg_size", "width", "height",
                 "text_words"]
HASH_COLUMNS = ["json_sha256", "jpg_sha256"]  # hex sha256 of each member's bytes (jpg: null without an image)
FIX = "rebuild the mix with `imp-data build RECIPE` (it rewrites shards that differ from the index)"
WARN_FIRST, WARN_EVERY = 5, 1000  # corrupt-sample warnings: the first few, then one per WARN_EVERY


def decode_image(jpeg: bytes) -> torch.Tensor:
    """JPEG bytes -> uint8 tensor [3, H, W]; no resize (the shards are already at the tower's resolution).

    The loader hands images on as uint8 and the model normalises them where it runs (`normalize_pixels`):
    a quarter of the bytes through the DataLoader's shared memory and the host-to-GPU copy, which is most
    of what a worker costs beyond the JPEG decode.
    """
    with Image.open(io.BytesIO(jpeg)) as img:
        arr = np.array(img if img.mode == "RGB" else img.convert("RGB"))  # a writable copy for torch
    return torch.from_numpy(arr).permute(2, 0, 1)  # a CHW view of HWC memory; collate's stack makes it NCHW


def normalize_pixels(pixels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images -> `dtype` in [-1, 1] (SigLIP: mean = std = 0.5): x / 127.5 - 1 == (x / 255 - 0.5) / 0.5."""
    return pixels.to(dtype).div_(127.5).sub_(1.0)


def decode_pixels(jpeg: bytes) -> torch.Tensor:
    """JPEG bytes -> float tensor [3, H, W] in [-1, 1], ready for the vision tower.

    Example:
        >>> buf = io.BytesIO(); Image.new("RGB", (4, 2), (255, 0, 0)).save(buf, "PNG")
        >>> decode_pixels(buf.getvalue())[:, 0, 0].tolist()
        [1.0, -1.0, -1.0]
    """
    return normalize_pixels(decode_image(jpeg))


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

        path = mix_dir / "index.parquet"
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
        wids = mix_dir / "shards" / "index.wids.json"
        listed = json.loads(wids.read_text())["shardlist"] if wids.is_file() else []
        index = cls(shards_dir=mix_dir / "shards", keys=frame["key"].to_numpy(),
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

    def read(self, pos: int) -> dict:
        """The raw sample at `pos`: {"key", "json", "pixel_values" (or None)}; CorruptSample on bad bytes."""
        ix = self.index
        fd, start, jpg = self._fd(int(ix.shard[pos])), int(ix.json_offset[pos]), int(ix.jpg_offset[pos])
        # KEY.jpg follows KEY.json in the tar: one pread covers both members
        end = jpg + int(ix.jpg_size[pos]) if jpg >= 0 else start + int(ix.json_size[pos])
        data = os.pread(fd, end - start, start)
        if len(data) != end - start:
            raise CorruptSample(f"truncated: the member at byte {start} ends past the end of the file")
        if self.verify:  # hash the members (not the tar header between them) before anything parses them
            view, n = memoryview(data), int(ix.json_size[pos])
            for ext, member, want in (("json", view[:n], ix.json_sha256), ("jpg", view[jpg - start:], ix.jpg_sha256)):
                if (ext == "json" or jpg >= 0) and hashlib.sha256(member).digest() != want[pos].tobytes():
                    raise CorruptSample(f"member {ix.keys[pos]}.{ext} differs from its sha256 in index.parquet "
                                        "(altered since the build)")
        try:
            record = json.loads(data[: ix.json_size[pos]])
        except (ValueError, UnicodeDecodeError) as err:
            raise CorruptSample(f"KEY.json is not valid JSON ({err})") from None
        if not isinstance(record, dict) or record.get("key") != ix.keys[pos]:
            raise CorruptSample("the index's offsets do not point at this sample's KEY.json")
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

    def describe(self, pos: int, err: CorruptSample) -> str:
        """One line: the shard, the key, what is wrong and what to do."""
        ix = self.index
        return (f"{ix.shards_dir / ix.names[ix.shard[pos]]}: sample {ix.keys[pos]}: {err} — {FIX}; "
                f"`imp-data validate {ix.shards_dir.parent}` lists every bad shard")

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class _Batches(torch.utils.data.Dataset):
    """Batch i of this rank -> read, decode, encode, collate (runs inside the DataLoader workers)."""

    def __init__(self, reader: ShardReader, positions: np.ndarray, batch_size: int, encode: Callable,
                 collate: Callable, on_corrupt: str):
        self.reader, self.positions, self.batch_size = reader, positions, batch_size
        self.encode, self.collate, self.on_corrupt = encode, collate, on_corrupt
        self.warned = 0

    def _corrupt(self, pos: int, err: CorruptSample) -> str | None:
        """The ShardError message when raising (the caller raises it in the main process), else None."""
        message = self.reader.describe(pos, err)
        if self.on_corrupt == "raise":
            return f"{message}; or set on_corrupt: skip"
        self.warned += 1  # rate-limited, as open_clip's log_and_continue: a bad shard must not flood the log
        if self.warned <= WARN_FIRST or self.warned % WARN_EVERY == 0:
            log.warning("skipping corrupt sample (%d so far in this process): %s", self.warned, message)
        return None

    def __getitem__(self, i: int) -> dict:
        """The batch, or its first corrupt sample's message under on_corrupt=raise: returned, not raised,
        since a DataLoader worker's exception reaches the main process as a multi-line traceback."""
        items, dropped, corrupt = [], 0, 0
        for pos in self.positions[i * self.batch_size: (i + 1) * self.batch_size]:
            try:
                raw = self.reader.read(int(pos))
            except CorruptSample as err:
                error = self._corrupt(int(pos), err)
                if error:
                    return {"error": error, "index": i}
                corrupt += 1
                continue
            item = self.encode(raw)
            if item is None:
                dropped += 1
            else:
                items.append(item)
        return {"batch": self.collate(items) if items else None, "dropped": dropped, "corrupt": corrupt, "index": i,
                "error": None}


class ShardLoader:
    """Iterable of collated batches for one rank; built by `make_loader` (see it for the arguments).

    Attributes:
        epoch: the epoch being read (`set_epoch` changes it).
        dropped: samples `encode` returned None for, so far (restored by `load_state_dict`).
        corrupt: corrupt samples skipped (on_corrupt="skip"), so far.
    """

    def __init__(self, mix_dir: Path, *, encode: Callable[[dict], dict | None],
                 collate: Callable[[list[dict]], dict], batch_size: int, seed: int, epoch: int = 0, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, group_by_modality_length: bool = False,
                 megabatch: int | None = None, drop_last: bool = True, on_corrupt: str = "raise",
                 verify: bool = True, pin_memory: bool = False, index: ShardIndex | None = None):
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(f"unknown on_corrupt {on_corrupt!r}; valid: {', '.join(ON_CORRUPT)}")
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size or num_workers < 0:
            raise ValueError(f"need batch_size >= 1, 0 <= rank < world_size, num_workers >= 0; got {batch_size=}, "
                             f"{rank=}, {world_size=}, {num_workers=}")
        # `index`: one already in memory (bench/gpu_check.py builds its own where polars is not installed)
        self.index = index if index is not None else ShardIndex.read(Path(mix_dir), verify=verify)
        self.reader = ShardReader(self.index)
        self.lengths = modality_lengths(self.index.text_words, self.index.jpg_offset >= 0)
        self.encode, self.collate, self.on_corrupt = encode, collate, on_corrupt
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.num_workers, self.drop_last, self.pin_memory = num_workers, drop_last, pin_memory
        self.group = group_by_modality_length
        self.megabatch = megabatch or batch_size * world_size
        self.dropped = self.corrupt = 0
        self.set_epoch(epoch)

    @property
    def skipped(self) -> int:
        """Samples that never reached a batch: dropped by encode + corrupt."""
        return self.dropped + self.corrupt

    def set_epoch(self, epoch: int) -> None:
        """Read `epoch` next, from its first batch."""
        self.epoch, self.start = epoch, 0
        self.positions = sample_order(len(self.index), seed=self.seed, epoch=epoch, rank=self.rank,
                                      world_size=self.world_size, lengths=self.lengths if self.group else None,
                                      megabatch=self.megabatch)
        n = len(self.positions)
        self.n_batches = n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        """Batches per epoch for this rank (some may come out smaller when samples are skipped)."""
        return self.n_batches

    def state_dict(self) -> dict:
        """The position after the last batch handed out, plus the counters."""
        return {"epoch": self.epoch, "next_batch": self.start, "seed": self.seed, "n_samples": len(self.index),
                "dropped": self.dropped, "corrupt": self.corrupt}

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where `state` was taken (same mix, seed and world size)."""
        if state["seed"] != self.seed or state.get("n_samples", len(self.index)) != len(self.index):
            raise ImpDataError(f"{self.index.shards_dir.parent}: loader state is for seed {state['seed']} over "
                               f"{state.get('n_samples')} samples, this loader has seed {self.seed} over "
                               f"{len(self.index)} — resume with the run's own mix and seed")
        self.set_epoch(state["epoch"])
        self.start = state["next_batch"]
        self.dropped, self.corrupt = state.get("dropped", 0), state.get("corrupt", 0)

    def _dataset(self) -> _Batches:
        return _Batches(self.reader, self.positions, self.batch_size, self.encode, self.collate, self.on_corrupt)

    def first_image(self) -> dict | None:
        """KEY.json of the first sample with an image that reads cleanly (None: no images), read and verified
        like a training sample; the run takes the mix's render settings from it. on_corrupt applies."""
        dataset = self._dataset()
        for pos in np.flatnonzero(self.index.jpg_offset >= 0):
            try:
                return self.reader.read(int(pos))["json"]
            except CorruptSample as err:
                error = dataset._corrupt(int(pos), err)
                if error:
                    raise ShardError(error) from None
        return None

    def __iter__(self) -> Iterator[dict]:
        dataset = self._dataset()
        indices = range(self.start, self.n_batches)
        if self.num_workers == 0:
            outputs = map(dataset.__getitem__, indices)  # in process: the reader's descriptors stay open
        else:
            # its own generator: starting workers must not draw from the global RNG (dropout), or a resumed
            # run would see different dropout masks than an uninterrupted one
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            outputs = torch.utils.data.DataLoader(dataset, batch_size=None, sampler=indices,
                                                  num_workers=self.num_workers, generator=generator,
                                                  pin_memory=self.pin_memory)
        for out in outputs:  # in index order whatever the worker count, so resuming is exact
            if out["error"]:
                raise ShardError(out["error"])
            self.start = out["index"] + 1
            self.dropped += out["dropped"]
            self.corrupt += out["corrupt"]
            if out["batch"] is not None:
                yield out["batch"]

    def close(self) -> None:
        """Close the in-process shard descriptors (workers close theirs when they exit)."""
        self.reader.close()


def make_loader(mix_dir: Path, *, encode: Callable[[dict], dict | None], collate: Callable[[list[dict]], dict],
                batch_size: int, seed: int, epoch: int = 0, rank: int = 0, world_size: int = 1,
                num_workers: int = 0, group_by_modality_length: bool = False, megabatch: int | None = None,
                drop_last: bool = True, on_corrupt: str = "raise", verify: bool = True,
                pin_memory: bool = False) -> ShardLoader:
    """The training loader for one rank over `DATA/mixes/<mix>/` (index.parquet + shards/).

    Args:
        mix_dir: the mix directory.
        encode: raw sample {"key", "json" (KEY.json), "pixel_values" (uint8 [3, H, W] or None)} -> item,
            or None to drop it (counted in `dropped`).
        collate: list of items -> batch.
        batch_size: samples per batch per rank.
        seed, epoch: the order is a pure function of these two.
        rank, world_size: this process's share; every rank gets the same number of batches.
        num_workers: DataLoader worker processes; 0 reads in this process.
        group_by_modality_length: LLaVA's sampler (pure-modality megabatches sorted by length).
        megabatch: samples per megabatch when grouping; default batch_size * world_size (pass
            batch_size * world_size * grad_accum for LLaVA's global batch).
        drop_last: drop this rank's last, partial batch.
        on_corrupt: "raise" a ShardError naming the shard and key, or "skip" (counted in `corrupt`).
        verify: check every member read against its sha256 in index.parquet (a mix without them is refused);
            False only for trusted storage (`imp-data train --trust-shards`). Sizes are checked either way.
        pin_memory: pin batches for faster host-to-GPU copies (workers only).

    Example:
        >>> loader = make_loader(mix, encode=lambda raw: raw, collate=list, batch_size=8, seed=0)  # doctest: +SKIP
        >>> for batch in loader: ...  # doctest: +SKIP
    """
    return ShardLoader(mix_dir, encode=encode, collate=collate, batch_size=batch_size, seed=seed, epoch=epoch,
                       rank=rank, world_size=world_size, num_workers=num_workers,
                       group_by_modality_length=group_by_modality_length, megabatch=megabatch, drop_last=drop_last,
                       on_corrupt=on_corrupt, verify=verify, pin_memory=pin_memory)
