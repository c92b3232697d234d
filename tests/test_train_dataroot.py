"""A training job needs only a mix's shards, however its data root is named:
- a mix whose plan.parquet is gone still trains, and the tiny tokenizer it trains from the shards' KEY.json
  is the one the plan's texts give (the same texts in the same order), in both demo mixes;
- `imp-data train RUN --data-root file:///DIR` trains exactly as `--data-root DIR`: a file:// URL is a
  local data root, not a bucket (nothing is pulled, no cache is made).

Run: pytest tests/test_train_dataroot.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from imp_data.train.checkpoint import latest_checkpoint
from imp_data.train.config import load_run
from imp_data.train.loop import build_tokenizer, train
from imp_data.train.tokenizer import train_tiny_tokenizer
from tests.train_support import RUNS, demo_data_root, one_thread  # noqa: F401 (autouse fixture)


def without_plan(demo_root: Path, mix: str, data_root: Path) -> Path:
    """A copy of a demo mix with its build intermediates' plan.parquet removed."""
    copy = Path(shutil.copytree(demo_root / "mixes" / mix, data_root / "mixes" / mix))
    (copy / "plan.parquet").unlink()
    return copy


@pytest.mark.parametrize(("run", "mix"), [("tiny_stage1.yaml", "demo_stage1"), ("tiny_stage2.yaml", "demo_stage2")])
def test_tokenizer_from_the_shards_is_the_plans(demo_build, tmp_path, run, mix):
    without_plan(demo_build[0], mix, tmp_path)
    cfg = load_run(RUNS / run)
    plan = pl.read_parquet(demo_build[0] / "mixes" / mix / "plan.parquet", columns=["conversations"])
    texts = [turn["value"] for conv in plan["conversations"].to_list() for turn in conv]
    want = train_tiny_tokenizer(texts, cfg.model.tokenizer_vocab_size)
    got = build_tokenizer(cfg, tmp_path, tmp_path / "run")
    assert got.backend_tokenizer.to_str() == want.backend_tokenizer.to_str()
    assert (tmp_path / "run" / "tokenizer").is_dir()


def test_a_mix_without_its_plan_trains(demo_build, tmp_path):
    without_plan(demo_build[0], "demo_stage1", tmp_path)
    run_dir = train(RUNS / "tiny_stage1.yaml", data_root=tmp_path, overrides=["train.max_steps=2"])
    assert json.loads((latest_checkpoint(run_dir) / "meta.json").read_text())["step"] == 2


def test_file_url_data_root_trains_as_a_plain_path(demo_build, tmp_path, monkeypatch):
    from imp_data.cli import main

    cache = tmp_path / "cache"
    monkeypatch.setenv("IMP_DATA_CACHE", str(cache))
    (tmp_path / "root").mkdir()
    root = demo_data_root(demo_build[0], tmp_path / "root")
    logs = {}
    for name, arg in (("plain", str(root)), ("url", root.as_uri())):
        assert arg.startswith("file://") == (name == "url")
        assert main(["train", str(RUNS / "tiny_stage1.yaml"), "--data-root", arg, "--set", f"name={name}",
                     "--set", "train.max_steps=2"]) == 0
        ckpt = latest_checkpoint(root / "runs" / name)
        assert ckpt is not None
        logs[name] = [{k: r[k] for k in ("step", "loss", "lr", "grad_norm")}
                      for r in map(json.loads, (root / "runs" / name / "log.jsonl").read_text().splitlines())]
        logs[name, "projector"] = (ckpt / "mm_projector.pt").read_bytes()
    assert logs["url"] == logs["plain"] and len(logs["url"]) == 2
    assert logs["url", "projector"] == logs["plain", "projector"]
    assert not cache.exists()  # a local root: nothing pulled into a cache
