"""The training loader over real tars written by tests/shard_factory.py: the order is a pure function of
(seed, epoch); rank shares are padded like DistributedSampler; two processes (gloo) x two workers see
disjoint samples whose union is the epoch; state_dict resumes mid-epoch with the same batches (0 and 2
workers); modality grouping gives pure-modality batches; pixels decode to [3, R, R] with SigLIP
normalisation; a corrupt, truncated, missing or altered shard is a ShardError naming it, or skipped and
counted; plain webdataset reads the factory's shards (contract sanity).

Run: pytest tests/test_train_data.py
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import tarfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from imp_data.core.errors import ImpDataError, ShardError
from imp_data.train.data import make_loader
from imp_data.train.pixels import normalize_pixels
from imp_data.train.sampler import epoch_order, rank_positions, sample_order
from tests.shard_factory import make_samples, solid, write_mix

N = 43  # odd: two ranks need one padded sample


def info(raw: dict) -> dict:
    """An `encode` that keeps what the tests look at, and which worker produced it."""
    worker = torch.utils.data.get_worker_info()
    return {"key": raw["key"], "json": raw["json"], "pixels": raw["pixel_values"],
            "worker": worker.id if worker else None}


def drop_sevens(raw: dict) -> dict | None:
    return None if raw["key"].endswith("7") else info(raw)


def loader(mix: Path, **kw):
    args = dict(encode=info, collate=list, batch_size=4, seed=3)
    return make_loader(mix, **{**args, **kw})


def keys(ld) -> list[list[str]]:
    return [[item["key"] for item in batch] for batch in ld]


@pytest.fixture(scope="module")
def mix(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mix") / "tiny"
    write_mix(root, make_samples(N, seed=1), shard_size=8, resolution=32)
    return root


@pytest.fixture
def copy(mix, tmp_path) -> Path:
    """A private copy of the mix, to damage."""
    return Path(shutil.copytree(mix, tmp_path / "tiny"))


def index(mix: Path) -> pl.DataFrame:
    return pl.read_parquet(mix / "index.parquet")


# ---- order


def test_order_is_pure_function_of_seed_and_epoch(mix):
    first = keys(loader(mix))
    assert keys(loader(mix)) == first
    flat = [k for batch in first for k in batch]
    assert flat == [f"{p:09d}" for p in epoch_order(N, 3, 0)[: N // 4 * 4]]  # drop_last: 10 full batches
    again = loader(mix)
    again.set_epoch(1)
    assert keys(again) != first
    again.set_epoch(0)
    assert keys(again) == first
    assert keys(loader(mix, seed=4)) != first


def test_rank_shares_are_padded_like_distributed_sampler():
    order = epoch_order(10, 0, 0)
    shares = [rank_positions(order, r, 3) for r in range(3)]
    assert [len(s) for s in shares] == [4, 4, 4]
    together = np.concatenate(shares)
    assert set(together.tolist()) == set(range(10))
    assert sorted(together.tolist()) == sorted(order.tolist() + order[:2].tolist()), "padding repeats the head"
    with pytest.raises(ValueError, match="rank 3"):
        rank_positions(order, 3, 3)


@pytest.mark.parametrize("drop_last", [True, False])
def test_len_is_batches_per_epoch_for_the_rank(mix, drop_last):
    ld = loader(mix, batch_size=5, rank=1, world_size=2, drop_last=drop_last)
    got = keys(ld)
    assert len(ld) == len(got) == (22 // 5 if drop_last else -(-22 // 5))
    assert [len(b) for b in got][-1] == (5 if drop_last else 2)


# ---- pixels


def test_pixels_decode_to_resolution_with_siglip_normalisation(tmp_path):
    samples = make_samples(3, text_only_every=3)
    samples[0]["image_bytes"] = solid(40, 40, (255, 0, 0))  # square: no padding
    samples[1]["image_bytes"] = solid(40, 20, (0, 0, 255))  # wide: pad rows above and below
    mix = tmp_path / "px"
    write_mix(mix, samples, resolution=32, quality=95)
    got = {item["key"]: item for batch in loader(mix, batch_size=3, drop_last=False) for item in batch}
    red, blue, text = got["000000000"], got["000000001"], got["000000002"]
    assert text["pixels"] is None and text["json"]["image"] is None
    for item in (red, blue):  # uint8 through the workers; the model normalises on its device
        assert item["pixels"].shape == (3, 32, 32) and item["pixels"].dtype == torch.uint8
        item["pixels"] = normalize_pixels(item["pixels"])
    assert torch.allclose(red["pixels"].mean((1, 2)), torch.tensor([1.0, -1.0, -1.0]), atol=0.03)
    assert torch.allclose(blue["pixels"][:, 16, 16], torch.tensor([-1.0, -1.0, 1.0]), atol=0.05)
    assert torch.allclose(blue["pixels"][:, 1, 16], torch.full((3,), 127 / 127.5 - 1), atol=0.03), "pad = fill"
    row = index(mix).row(1, named=True)
    with open(mix / "shards" / row["shard_name"], "rb") as f:
        f.seek(row["jpg_offset"])
        ref = np.asarray(Image.open(io.BytesIO(f.read(row["jpg_size"]))).convert("RGB"), dtype=np.float32)
    expected = torch.from_numpy((ref / 255 - 0.5) / 0.5).permute(2, 0, 1)
    assert torch.allclose(blue["pixels"], expected, atol=1e-6)
    assert blue["json"]["image"]["mode"] == "pad" and blue["json"]["key"] == "000000001"


# ---- resume


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("group", [False, True])
def test_state_dict_resumes_mid_epoch(mix, workers, group):
    kw = dict(num_workers=workers, encode=drop_sevens, group_by_modality_length=group, drop_last=False)
    whole = loader(mix, **kw)
    full = keys(whole)
    part = loader(mix, **kw)
    it = iter(part)
    seen = [[x["key"] for x in next(it)] for _ in range(4)]
    state = json.loads(json.dumps(part.state_dict()))  # it goes into a checkpoint
    del it
    fresh = loader(mix, **kw)
    fresh.load_state_dict(state)
    assert seen + keys(fresh) == full
    assert fresh.dropped == whole.dropped == sum(k.endswith("7") for k in index(mix)["key"])
    assert fresh.skipped == fresh.dropped and fresh.corrupt == 0
    with pytest.raises(ImpDataError, match="seed"):
        loader(mix, seed=9).load_state_dict(state)


# ---- grouping


def test_modality_grouping_gives_pure_batches(mix):
    has_image = dict(zip(index(mix)["key"], index(mix)["jpg_offset"].is_not_null()))
    words = dict(zip(index(mix)["key"], index(mix)["text_words"]))
    ld = loader(mix, group_by_modality_length=True, megabatch=8, drop_last=False)  # 2 micro-batches a step
    batches = keys(ld)
    assert sorted(k for b in batches for k in b) == sorted(has_image)
    n_full = sum(has_image.values()) // 8 + (N - sum(has_image.values())) // 8
    for b in batches[: 2 * n_full]:
        assert len({has_image[k] for k in b}) == 1, "a megabatch is one modality"
    for first, second in zip(batches[: 2 * n_full: 2], batches[1: 2 * n_full: 2]):
        lengths = [words[k] for k in first + second]
        assert lengths == sorted(lengths, reverse=True), "each megabatch is sorted longest first"
    assert keys(loader(mix, group_by_modality_length=True, megabatch=8, drop_last=False)) == batches
    ld.set_epoch(1)
    assert keys(ld) != batches


def test_grouping_covers_every_rank_share():
    lengths = np.array([5, -3, 8, -1, 9, 2, -7, 4, 1, -2, 6])
    shares = [sample_order(11, seed=0, epoch=2, rank=r, world_size=2, lengths=lengths, megabatch=4)
              for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 6
    assert set(np.concatenate(shares).tolist()) == set(range(11))


# ---- ranks x workers


def _rank(rank: int, world: int, port: int, mix: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    ld = loader(Path(mix), num_workers=2, rank=rank, world_size=world, batch_size=2, drop_last=False)
    mine = [(item["key"], item["worker"]) for batch in ld for item in batch]
    gathered = [None] * world
    dist.all_gather_object(gathered, (len(ld), mine))
    if rank == 0:
        torch.save(gathered, out)
    dist.destroy_process_group()


def test_two_ranks_two_workers_see_disjoint_samples_covering_the_epoch(mix, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "keys.pt"
    mp.spawn(_rank, args=(2, port, str(mix), str(out)), nprocs=2, join=True)
    everything = set(index(mix)["key"])
    per_rank = [[k for k, _ in mine] for _, mine in torch.load(out)]
    assert [n for n, _ in torch.load(out)] == [11, 11]
    assert len(per_rank[0]) == len(per_rank[1]) == 22
    assert set(per_rank[0]) | set(per_rank[1]) == everything
    assert len(set(per_rank[0]) & set(per_rank[1])) == 1, "only the DistributedSampler-style pad repeats"
    for _, mine in torch.load(out):
        by_worker = {w: [k for k, ww in mine if ww == w] for w in (0, 1)}
        assert not set(by_worker[0]) & set(by_worker[1])
        assert abs(len(by_worker[0]) - len(by_worker[1])) <= 2, "workers share a rank's batches evenly"


# ---- corrupt shards


def _row(mix: Path, image: bool = True) -> dict:
    return index(mix).filter(pl.col("jpg_offset").is_not_null() == image).row(0, named=True)


def _poke(mix: Path, shard: str, offset: int, data: bytes) -> None:
    with open(mix / "shards" / shard, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize("member", ["json", "jpg"])
def test_corrupt_member_raises_naming_shard_and_key_or_is_skipped(copy, member, caplog):
    row = _row(copy)
    _poke(copy, row["shard_name"], row[f"{member}_offset"], b"\x00garbage")
    with pytest.raises(ShardError, match=f"{row['shard_name']}: sample {row['key']}"):
        keys(loader(copy, drop_last=False))
    skipping = loader(copy, on_corrupt="skip", drop_last=False)
    with caplog.at_level(logging.WARNING, logger="imp_data.train.data"):
        got = [k for b in keys(skipping) for k in b]
    assert sorted(got) == sorted(set(index(copy)["key"]) - {row["key"]})
    assert skipping.corrupt == skipping.skipped == 1
    assert row["key"] in caplog.text


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_truncated_or_missing_shard(copy, damage):
    row = _row(copy)
    tar = copy / "shards" / row["shard_name"]
    if damage == "truncate":
        tar.write_bytes(tar.read_bytes()[:3000])
    else:
        tar.unlink()
    with pytest.raises(ShardError, match=f"{row['shard_name']}.*(truncated|cannot open)"):
        keys(loader(copy, drop_last=False))
    skipping = loader(copy, on_corrupt="skip", drop_last=False, num_workers=2)
    got = [k for b in keys(skipping) for k in b]
    in_shard = set(index(copy).filter(pl.col("shard_name") == row["shard_name"])["key"])
    assert sorted(got) == sorted(set(index(copy)["key"]) - in_shard)
    assert skipping.corrupt == len(in_shard) == 8


def test_checksum_verification_catches_same_size_edits(copy):
    """On by default: every member read is checked against its sha256 in the index (tests/test_train_verify.py)."""
    row = _row(copy)
    _poke(copy, row["shard_name"], row["jpg_offset"] + row["jpg_size"] // 2, b"\x01")
    with pytest.raises(ShardError, match=f"{row['shard_name']}: sample {row['key']}: .*jpg differs from its sha256"):
        keys(loader(copy, drop_last=False))


def test_missing_index_names_the_fix(tmp_path):
    with pytest.raises(ShardError, match="index.parquet.*build the mix"):
        loader(tmp_path)


# ---- contract sanity


def test_plain_webdataset_reads_the_factory_shards(mix):
    import webdataset as wds

    wids = json.loads((mix / "shards" / "index.wids.json").read_text())
    assert wids["__kind__"] == "wids-shard-index-v1" and sum(s["nsamples"] for s in wids["shardlist"]) == N
    urls = [str(mix / "shards" / s["url"]) for s in wids["shardlist"]]
    seen = {}
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        record = json.loads(sample["json"])
        assert record["key"] == sample["__key__"] and record["mix"] == "tiny"
        if "jpg" in sample:
            assert Image.open(io.BytesIO(sample["jpg"])).size == (32, 32)
        seen[sample["__key__"]] = "jpg" in sample
    rows = index(mix)
    assert seen == dict(zip(rows["key"], rows["jpg_offset"].is_not_null()))
    with tarfile.open(urls[0]) as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:3]] == ["000000000.json", "000000000.jpg", "000000001.json"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
    assert members[0].offset_data == rows["json_offset"][0] and members[1].offset_data == rows["jpg_offset"][0]
