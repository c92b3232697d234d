"""Stream a mix's shards for training: a visible list of stages, split by SAMPLE across ranks x workers.

order(seed, epoch) -> [modality grouping] -> pad to a multiple of world_size -> this rank's stride ->
batches -> (DataLoader workers take whole batches) -> read members by byte offset -> decode JPEG ->
encode (tokenise + mask) -> collate.

The order is a pure function of (seed, epoch), every rank gets an equal disjoint share (padding
repeats the first samples, as DistributedSampler does), and the loader's position is one integer (the
next batch), so `state_dict()` / `load_state_dict()` resume mid-epoch exactly. Members are read with
`index.parquet`'s offsets (no tar scan); shards are already at resolution, so decoding is the only image
work left. SigLIP normalisation: (x / 255 - 0.5) / 0.5.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image

from imp_data.errors import ShardError

log = logging.getLogger(__name__)
INDEX_COLUMNS = ["key", "shard_name", "json_offset", "json_size", "jpg_offset", "jpg_size", "text_words"]


def decode_pixels(jpeg: bytes) -> torch.Tensor:
    """JPEG -> float tensor [3, H, W] normalised with SigLIP's mean/std 0.5."""
    with Image.open(io.BytesIO(jpeg)) as img:
        arr = np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy for torch
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def modality_grouped(order: np.ndarray, lengths: np.ndarray, megabatch: int, seed: int, epoch: int) -> np.ndarray:
    """LLaVA's group_by_modality_length: pure-modality megabatches sorted by length, shuffled."""
    rng = np.random.default_rng([seed, epoch, 1])
    groups = []
    for positive in (True, False):
        idx = order[(lengths[order] > 0) == positive]
        for start in range(0, len(idx), megabatch):
            chunk = idx[start: start + megabatch]
            groups.append(chunk[np.argsort(-np.abs(lengths[chunk]), kind="stable")])
    if not groups:
        return order
    full = [g for g in groups if len(g) == megabatch]
    partial = [g for g in groups if len(g) < megabatch]
    full = [full[i] for i in rng.permutation(len(full))]
    return np.concatenate(full + partial) if full or partial else order


class _Batches(torch.utils.data.Dataset):
    """Batch i of this rank -> read, decode, encode, collate (runs inside DataLoader workers)."""

    def __init__(self, loader: ShardLoader):
        self.loader = loader
        self.files: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.loader.batches)

    def _read(self, shard: str, offset, size) -> bytes:
        handle = self.files.get(shard)
        if handle is None:
            handle = self.files[shard] = open(self.loader.shards_dir / shard, "rb")
        handle.seek(offset)
        data = handle.read(size)
        if len(data) != size:
            raise ShardError(f"{self.loader.shards_dir / shard}: truncated (member at byte {offset} is short)")
        return data

    def raw_sample(self, row: dict) -> dict | None:
        shard = row["shard_name"]
        try:
            record = json.loads(self._read(shard, row["json_offset"], row["json_size"]))
            pixels = None
            if row["jpg_offset"] is not None:
                pixels = decode_pixels(self._read(shard, row["jpg_offset"], row["jpg_size"]))
            return {"key": row["key"], "json": record, "pixel_values": pixels}
        except (OSError, ValueError, ShardError) as err:
            message = f"{self.loader.shards_dir / shard}: sample {row['key']} is corrupt ({err})"
            if self.loader.on_corrupt == "raise":
                raise ShardError(message) from None
            log.warning(message)
            return None

    def __getitem__(self, i: int):
        samples, skipped = [], 0
        for pos in self.loader.batches[i]:
            raw = self.raw_sample(self.loader.rows[pos])
            item = self.loader.encode(raw) if raw is not None else None
            if item is None:
                skipped += 1
            else:
                samples.append(item)
        batch = self.loader.collate(samples) if samples else None
        return {"batch": batch, "skipped": skipped, "index": i}


class ShardLoader:
    """Iterable of collated batches for one rank; see the module docstring."""

    def __init__(self, mix_dir: Path, *, encode: Callable[[dict], dict | None], collate: Callable[[list[dict]], dict],
                 batch_size: int, seed: int, epoch: int = 0, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, group_by_modality_length: bool = False, megabatch: int | None = None,
                 drop_last: bool = True, on_corrupt: str = "raise"):
        mix_dir = Path(mix_dir)
        index_path = mix_dir / "index.parquet"
        if not index_path.is_file():
            raise ShardError(f"{index_path}: no shard index — build the mix first (imp-data build RECIPE)")
        self.shards_dir = mix_dir / "shards"
        self.rows = pl.read_parquet(index_path, columns=INDEX_COLUMNS).to_dicts()
        self.lengths = np.array([r["text_words"] + 700 if r["jpg_offset"] is not None else -max(r["text_words"], 1)
                                 for r in self.rows])
        self.encode, self.collate = encode, collate
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.num_workers, self.group, self.drop_last, self.on_corrupt = num_workers, group_by_modality_length, drop_last, on_corrupt
        self.megabatch = megabatch or batch_size * world_size
        self.start = 0
        self.skipped = 0
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        order = epoch_order(len(self.rows), self.seed, epoch)
        if self.group:
            order = modality_grouped(order, self.lengths, self.megabatch, self.seed, epoch)
        total = -(-len(order) // self.world_size) * self.world_size
        order = np.concatenate([order, order[: total - len(order)]])  # pad like DistributedSampler
        mine = order[self.rank:: self.world_size].tolist()
        n = len(mine) // self.batch_size if self.drop_last else -(-len(mine) // self.batch_size)
        self.batches = [mine[i * self.batch_size: (i + 1) * self.batch_size] for i in range(n)]

    def __len__(self) -> int:
        return len(self.batches)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "next_batch": self.start, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"loader state is for seed {state['seed']}, this loader uses {self.seed}")
        self.set_epoch(state["epoch"])
        self.start = state["next_batch"]

    def __iter__(self):
        dataset = _Batches(self)
        indices = list(range(self.start, len(self.batches)))
        # its own generator: creating an iterator must not consume the global RNG (dropout), or a resumed
        # run would draw different dropout masks than an uninterrupted one
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        dl = torch.utils.data.DataLoader(dataset, batch_size=None, sampler=indices, num_workers=self.num_workers,
                                         persistent_workers=False, generator=generator)
        for out in dl:
            self.skipped += out["skipped"]
            self.start = out["index"] + 1
            if out["batch"] is not None:
                yield out["batch"]
        self.start = 0


def make_loader(mix_dir: Path, **kwargs) -> ShardLoader:
    """The training loader for `DATA/mixes/<mix>` (see ShardLoader for the arguments)."""
    return ShardLoader(mix_dir, **kwargs)
