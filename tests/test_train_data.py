"""The shard loader: order is a pure function of (seed, epoch); two processes (gloo) x two workers see
disjoint samples whose union is the whole epoch; state_dict resumes mid-epoch with the same batches;
modality grouping gives pure-modality batches; a corrupt shard is a clear error naming it, or skipped
and counted.

Run: pytest tests/test_train_data.py
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import polars as pl
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from imp_data.errors import ShardError
from imp_data.train.data import make_loader


def keys_encode(raw):
    pv = raw["pixel_values"]
    return {"key": raw["key"], "has_image": pv is not None, "shape": tuple(pv.shape) if pv is not None else None,
            "range": (float(pv.min()), float(pv.max())) if pv is not None else None}


def keys_collate(items):
    return items


def loader(mix, **kw):
    args = dict(encode=keys_encode, collate=keys_collate, batch_size=4, seed=3)
    args.update(kw)
    return make_loader(mix, **args)


@pytest.fixture(scope="module")
def mix(demo_build) -> Path:
    return demo_build[0] / "mixes" / "demo_stage2"


def flat(ld) -> list[str]:
    return [item["key"] for batch in ld for item in batch]


def test_order_is_pure_function_of_seed_and_epoch(mix):
    a, b = loader(mix), loader(mix)
    assert flat(a) == flat(b)
    b.set_epoch(1)
    assert flat(b) != flat(a)
    assert flat(loader(mix, seed=4)) != flat(a)
    items = [it for batch in loader(mix) for it in batch if it["has_image"]]
    assert list(items[0]["shape"]) == [3, 64, 64]
    lo, hi = items[0]["range"]
    assert -1.0 <= lo < hi <= 1.0


@pytest.mark.parametrize("workers", [0, 2])
def test_state_dict_resumes_mid_epoch(mix, workers):
    full = [[it["key"] for it in batch] for batch in loader(mix, num_workers=workers)]
    ld = loader(mix, num_workers=workers)
    it = iter(ld)
    seen = [[x["key"] for x in next(it)] for _ in range(5)]
    state = ld.state_dict()
    fresh = loader(mix, num_workers=workers)
    fresh.load_state_dict(state)
    rest = [[x["key"] for x in batch] for batch in fresh]
    assert seen + rest == full


def test_modality_grouping_is_pure(mix):
    index = pl.read_parquet(mix / "index.parquet", columns=["key", "jpg_offset"])
    has_image = dict(zip(index["key"], index["jpg_offset"].is_not_null()))
    batches = [[it["key"] for it in batch] for batch in loader(mix, group_by_modality_length=True, megabatch=4)]
    mixed = [b for b in batches if len({has_image[k] for k in b}) > 1]
    assert len(mixed) <= 1, "only the leftover batch may mix modalities"


def _rank(rank: int, world: int, port: int, mix: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    ld = loader(Path(mix), num_workers=2, rank=rank, world_size=world, batch_size=2, drop_last=False)
    mine = flat(ld)
    gathered = [None] * world
    dist.all_gather_object(gathered, mine)
    if rank == 0:
        torch.save(gathered, out)
    dist.destroy_process_group()


def test_two_ranks_two_workers_split_samples(mix, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "keys.pt"
    mp.spawn(_rank, args=(2, port, str(mix), str(out)), nprocs=2, join=True)
    per_rank = torch.load(out)
    everything = set(pl.read_parquet(mix / "index.parquet", columns=["key"])["key"])
    a, b = per_rank
    assert len(a) == len(b) == -(-len(everything) // 2)
    assert set(a) | set(b) == everything
    overlap = set(a) & set(b)
    assert len(overlap) == 2 * len(a) - len(everything), "only DistributedSampler-style padding repeats"


def test_corrupt_shard_raises_or_skips(mix, tmp_path):
    copy = tmp_path / "mix"
    shutil.copytree(mix, copy)
    index = pl.read_parquet(copy / "index.parquet")
    row = index.filter(pl.col("jpg_offset").is_not_null()).row(0, named=True)
    tar = copy / "shards" / row["shard_name"]
    data = bytearray(tar.read_bytes())
    data[row["json_offset"]: row["json_offset"] + 8] = b"\x00garbage"
    tar.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=row["shard_name"]):
        flat(loader(copy))
    skipping = loader(copy, on_corrupt="skip")
    keys = flat(skipping)
    assert row["key"] not in keys and skipping.skipped == 1
    tar.write_bytes(bytes(data[: row["json_offset"] - 100]))  # truncated shard
    with pytest.raises(ShardError, match="truncated|corrupt"):
        flat(loader(copy))
