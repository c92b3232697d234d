"""Training trusts nothing it did not verify (issue #15, deliverable 6), on copies of the demo mixes:
- a same-size edit (one letter of a caption, 8 bytes inside a JPEG), a truncated shard, a 0-byte shard and
  a missing shard each make the loader raise a ShardError naming the shard and the key, in one line, with
  the fix (in process and from DataLoader workers);
- `imp-data train` exits 1 on them with that one line on stderr and no traceback;
- an index without per-member hashes (built by older code) is refused, naming the fix;
- `verify=False` / `--trust-shards` reads the edited caption without complaint, and an intact mix gives
  the same batches verified or not.

Run: pytest tests/test_train_verify.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch

from imp_data.core.errors import ShardError
from imp_data.train.checkpoint import latest_checkpoint
from imp_data.train.data import make_loader
from imp_data.train.loop import mix_render
from tests.conftest import ROOT
from tests.train_support import RUNS

DAMAGES = {  # what is done -> what the one-line error must say about it
    "text": r"member {key}\.json differs from its sha256",
    "jpeg": r"member {key}\.jpg differs from its sha256",
    "truncate": r"shard truncated or altered",
    "empty": r"the shard is empty \(0 bytes\)",
    "delete": r"the shard is missing",
}


def raw(sample: dict) -> dict:  # module level: DataLoader workers pickle it
    return sample


def load(mix: Path, **kw):
    return make_loader(mix, **{"encode": raw, "collate": list, "batch_size": 4, "seed": 0, "drop_last": False, **kw})


def read_all(mix: Path, **kw) -> list[list[dict]]:
    return list(load(mix, **kw))


def copy_mix(demo_root: Path, mix: str, data_root: Path) -> Path:
    return Path(shutil.copytree(demo_root / "mixes" / mix, data_root / "mixes" / mix))


def first_read(mix: Path, *, image: bool = False, shard: str | None = None) -> dict:
    """The index row of the first sample the loader reads (with an image / in `shard`), from an intact mix."""
    rows = {r["key"]: r for r in pl.read_parquet(mix / "index.parquet").iter_rows(named=True)}
    for batch in load(mix):
        for sample in batch:
            row = rows[sample["key"]]
            if (not image or row["jpg_offset"] is not None) and shard in (None, row["shard_name"]):
                return row
    raise AssertionError("no such sample")


def damage(mix: Path, how: str, row: dict) -> None:
    """Damage `row`'s sample (text, jpeg: same size, in place) or its whole shard."""
    tar = mix / "shards" / row["shard_name"]
    with open(tar, "r+b") as f:
        if how == "text":  # one letter of the first turn's text, so the JSON still parses and names its key
            f.seek(row["json_offset"])
            data = f.read(row["json_size"])
            at = data.index(b'"value":"') + len(b'"value":"')
            while not data[at:at + 1].isalpha():
                at += 1
            f.seek(row["json_offset"] + at)
            f.write(b"q" if data[at:at + 1] != b"q" else b"z")
        elif how == "jpeg":
            f.seek(row["jpg_offset"] + row["jpg_size"] // 2)
            f.write(b"\x5a" * 8)
        elif how in ("truncate", "empty"):
            f.truncate(tar.stat().st_size // 2 if how == "truncate" else 0)
    if how == "delete":
        tar.unlink()


def assert_one_line(message: str, mix: Path, row: dict, how: str) -> None:
    assert "\n" not in message.strip(), message
    assert f"{mix / 'shards' / row['shard_name']}: sample {row['key']}: " in message, message
    assert re.search(DAMAGES[how].format(key=row["key"]), message), message
    assert "imp-data build" in message and "imp-data validate" in message, message


@pytest.fixture
def stage2(demo_build, tmp_path) -> Path:
    """A private copy of the demo's stage-2 mix (5 shards, some text-only samples), to damage."""
    return copy_mix(demo_build[0], "demo_stage2", tmp_path)


# ---- the loader


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("how", list(DAMAGES))
def test_damage_is_one_shard_error_naming_shard_and_key(stage2, how, workers):
    if how in ("text", "jpeg"):
        row = first_read(stage2, image=how == "jpeg")
    else:  # a whole shard: the key named is the first one the loader reads from it
        row = first_read(stage2, shard=pl.read_parquet(stage2 / "index.parquet")["shard_name"].unique().sort()[1])
    damage(stage2, how, row)
    with pytest.raises(ShardError) as caught:
        read_all(stage2, num_workers=workers)
    assert_one_line(str(caught.value), stage2, row, how)


def test_first_shard_missing_or_empty_is_a_shard_error_when_reading_the_render_settings(stage2):
    """mix_render (what a run reads first) went straight to the shard: FileNotFoundError / 'Expecting value'."""
    index = pl.read_parquet(stage2 / "index.parquet")
    first = index.filter(pl.col("jpg_offset").is_not_null()).row(0, named=True)
    assert mix_render(stage2)["resolution"] == first["width"]
    for how in ("empty", "delete"):
        damage(stage2, how, first)
        with pytest.raises(ShardError) as caught:
            mix_render(stage2)
        assert_one_line(str(caught.value), stage2, first, how)


def test_trusted_read_passes_the_edited_caption_through(stage2):
    """--trust-shards: the edit parses and decodes fine, so without the hashes nothing notices it."""
    row = first_read(stage2)
    before = {s["key"]: s["json"] for batch in read_all(stage2) for s in batch}
    damage(stage2, "text", row)
    with pytest.raises(ShardError):
        read_all(stage2)
    after = {s["key"]: s["json"] for batch in read_all(stage2, verify=False) for s in batch}
    assert after.keys() == before.keys()
    assert [k for k in before if after[k] != before[k]] == [row["key"]]


@pytest.mark.parametrize("workers", [0, 2])
def test_intact_mix_gives_the_same_batches_verified_or_not(stage2, workers):
    verified, trusted = read_all(stage2, num_workers=workers), read_all(stage2, num_workers=workers, verify=False)
    assert sum(map(len, verified)) == pl.read_parquet(stage2 / "index.parquet").height
    assert [[s["key"] for s in b] for b in verified] == [[s["key"] for s in b] for b in trusted]
    for a, b in zip((s for batch in verified for s in batch), (s for batch in trusted for s in batch)):
        assert a["json"] == b["json"]
        assert (a["pixel_values"] is None) == (b["pixel_values"] is None)
        assert a["pixel_values"] is None or torch.equal(a["pixel_values"], b["pixel_values"])
    assert any(s["pixel_values"] is None for b in verified for s in b), "the demo mix has text-only samples"


def test_index_without_member_hashes_is_refused_unless_trusted(stage2):
    path = stage2 / "index.parquet"
    pl.read_parquet(path).drop("json_sha256", "jpg_sha256").write_parquet(path)
    with pytest.raises(ShardError, match=r"index\.parquet: no per-member sha256 .*imp-data build.*--trust-shards"):
        load(stage2)
    assert sum(map(len, read_all(stage2, verify=False))) == pl.read_parquet(path).height


def test_index_with_a_blank_member_hash_is_refused(stage2):
    path = stage2 / "index.parquet"
    index = pl.read_parquet(path)
    key = index["key"][3]
    index.with_columns(pl.when(pl.col("key") == key).then(None).otherwise(pl.col("json_sha256"))
                       .alias("json_sha256")).write_parquet(path)
    with pytest.raises(ShardError, match=f"1 row\\(s\\) without a valid json_sha256 \\(e.g. key {key}\\)"):
        load(stage2)


# ---- the CLI


def train_cli(data_root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imp_data.cli", "train", str(RUNS / "tiny_stage1.yaml"),
                           "--data-root", str(data_root), "--set", "train.epochs=1", *args],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "IMP_DATA_PROGRESS": "0"})


@pytest.mark.parametrize("how", ["text", "jpeg", "empty"])
def test_train_exits_1_with_one_line_naming_shard_and_key(demo_build, tmp_path, how):
    mix = copy_mix(demo_build[0], "demo_stage1", tmp_path)
    if how == "empty":  # the run reads its render settings first: from the first sample with an image
        row = pl.read_parquet(mix / "index.parquet").filter(pl.col("jpg_offset").is_not_null()).row(0, named=True)
    else:  # a sample of the first batch (tiny_stage1: batch 4, seed 0), so the run fails at once
        row = first_read(mix, image=True)
    damage(mix, how, row)
    done = train_cli(tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("imp-data train: error: ")
    assert_one_line(done.stderr, mix, row, how)
    assert latest_checkpoint(tmp_path / "runs" / "tiny_stage1") is None, "nothing was trained on bad bytes"
    if how == "text":  # --trust-shards: trained on the edited caption, as asked
        trusted = train_cli(tmp_path, "--trust-shards")
        assert trusted.returncode == 0, trusted.stderr
        assert "run written to" in trusted.stdout
