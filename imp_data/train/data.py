"""Stream a mix's shards for training, split by SAMPLE across ranks x workers, resumable mid-epoch.

The loader is a visible list of stages (open_clip):

    sample_order(seed, epoch, rank)       pure function; pad + stride per rank     (sampler.py)
    -> batches of batch_size              batch i of this rank
    -> DataLoader workers                 deal whole batches round-robin: disjoint, equal shares
    -> ShardReader.read                   pread KEY.json + KEY.jpg at index.parquet's byte offsets,
                                          each member checked against its sha256   (reader.py)
    -> decode_image                       JPEG -> uint8 [3, H, W]; the model normalises (pixels.py)
    -> encode                             tokenise + mask; None drops the sample (counted)
    -> collate                            one batch

Reading samples by position (reader.py) is what makes the loader's position one integer (the next batch),
so `state_dict()` / `load_state_dict()` resume exactly. A corrupt sample is a one-line ShardError naming
the shard and key (`on_corrupt="raise"`) or is skipped and counted (`"skip"`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from imp_data.core.errors import ImpDataError, ShardError
from imp_data.train.reader import CorruptSample, ShardIndex, ShardReader
from imp_data.train.sampler import modality_lengths, sample_order

log = logging.getLogger(__name__)
ON_CORRUPT = ("raise", "skip")
WARN_FIRST, WARN_EVERY = 5, 1000  # corrupt-sample warnings: the first few, then one per WARN_EVERY


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

    def _readable(self, positions, read: Callable[[int], dict]) -> Iterator[dict]:
        """`read(pos)` for each position, in order; on_corrupt decides what a corrupt sample does."""
        dataset = self._dataset()
        for pos in positions:
            try:
                yield read(int(pos))
            except CorruptSample as err:
                error = dataset._corrupt(int(pos), err)
                if error:
                    raise ShardError(error) from None

    def first_image(self) -> dict | None:
        """KEY.json of the first sample with an image that reads cleanly (None: no images), read and verified
        like a training sample; the run takes the mix's render settings from it. on_corrupt applies."""
        with_image = np.flatnonzero(self.index.jpg_offset >= 0)
        return next((s["json"] for s in self._readable(with_image, self.reader.read)), None)

    def records(self) -> Iterator[dict]:
        """Every sample's KEY.json in index order (images not read), verified like a training sample; what
        the run's tiny tokenizer trains on, so a run needs nothing but the shards. on_corrupt applies."""
        return self._readable(range(len(self.index)), self.reader.read_json)

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
