"""Training on the demo shards: both tiny stages overfit a fixed batch (loss falls >= 80%), a checkpoint
reloads to identical outputs, stage 2's LoRA covers lm_head and leaves the vision tower frozen, and a
run interrupted mid-epoch and resumed logs the same losses as an uninterrupted one.

Run: pytest tests/test_train_loop.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imp_data.train.checkpoint import latest_checkpoint, load_trainable
from imp_data.train.config import load_run
from imp_data.train.loop import build_model, build_tokenizer, make_run_loader, train
from imp_data.train.template import IMAGE_TOKEN_INDEX
from tests.conftest import ROOT

RUNS = ROOT / "manifests" / "runs"


@pytest.fixture(scope="module")
def data_root(demo_build, tmp_path_factory) -> Path:
    """A data root whose mixes are the session's demo mixes (runs are written here, not there)."""
    root, _ = demo_build
    data = tmp_path_factory.mktemp("train")
    (data / "mixes").symlink_to(root / "mixes", target_is_directory=True)
    return data


def fixed_batch(stage_yaml: str, data_root: Path):
    cfg = load_run(RUNS / stage_yaml, ["model.init_projector=null", "train.batch_size=2"])
    torch.manual_seed(0)
    tokenizer = build_tokenizer(cfg, data_root, data_root / "runs" / f"overfit_{cfg.name}")
    model = build_model(cfg, tokenizer, data_root)
    loader, _ = make_run_loader(cfg, tokenizer, model, data_root)
    return model, tokenizer, next(iter(loader))


def fit(model, batch, lr: float, steps: int) -> list[float]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                     pixel_values=batch["pixel_values"]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_stage2_overfits_a_fixed_batch(data_root):
    model, _, batch = fixed_batch("tiny_stage2.yaml", data_root)
    losses = fit(model, batch, lr=1e-2, steps=60)
    assert min(losses[-5:]) <= 0.2 * losses[0], (losses[0], losses[-5:])


def test_stage1_projector_learns_on_a_fixed_batch(data_root):
    """Stage 1 trains only the projector, so the LLM must already know language (Phi-2 does): the tiny
    LLM is first fitted to the batch's text alone, then frozen; the projector must then cut the loss
    further by telling the captions apart from the images. (Over a random frozen LLM nothing can.)"""
    model, tokenizer, batch = fixed_batch("tiny_stage1.yaml", data_root)
    text_ids = [row[row != IMAGE_TOKEN_INDEX] for row in batch["input_ids"]]
    width = max(len(r) for r in text_ids)
    ids = torch.full((len(text_ids), width), tokenizer.pad_token_id)
    labels = torch.full((len(text_ids), width), -100)
    for b, row in enumerate(text_ids):
        ids[b, : len(row)] = labels[b, : len(row)] = row
    model.llm.requires_grad_(True)
    opt = torch.optim.AdamW(model.llm.parameters(), lr=3e-3)
    for _ in range(100):
        loss = model.llm(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.llm.requires_grad_(False)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == \
        ["mm_projector.0.weight", "mm_projector.0.bias", "mm_projector.2.weight", "mm_projector.2.bias"]
    losses = fit(model, batch, lr=1e-2, steps=150)
    assert min(losses[-5:]) <= 0.85 * losses[0], (losses[0], losses[-5:])


def test_stage2_lora_targets_and_frozen_tower(data_root):
    cfg = load_run(RUNS / "tiny_stage2.yaml", ["model.init_projector=null"])
    tokenizer = build_tokenizer(cfg, data_root, data_root / "runs" / "lora_check")
    model = build_model(cfg, tokenizer, data_root)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lm_head" in n and "lora_" in n for n in trainable)
    assert any("fc1" in n and "lora_" in n for n in trainable) and any("dense" in n and "lora_" in n for n in trainable)
    assert not any(n.startswith("vision_tower") for n in trainable)
    assert all(n.startswith("mm_projector") or "lora_" in n for n in trainable)


def test_resume_mid_epoch_matches_uninterrupted_and_reloads(data_root):
    common = ["train.epochs=1", "train.max_steps=null", "model.init_projector=null", "lora.dropout=0.05"]
    straight = train(RUNS / "tiny_stage2.yaml", data_root=str(data_root), overrides=common + ["name=resume_a"])
    losses_a = [json.loads(line)["loss"] for line in (straight / "log.jsonl").read_text().splitlines()]
    # the same run, stopped after 7 steps (mid-epoch: an epoch has more), then resumed to the end
    part = train(RUNS / "tiny_stage2.yaml", data_root=str(data_root),
                 overrides=common + ["name=resume_b", "train.stop_after=7"])
    state = torch.load(latest_checkpoint(part) / "state.pt", weights_only=False)
    assert 0 < state["loader"]["next_batch"], "stopped mid-epoch"
    resumed = train(RUNS / "tiny_stage2.yaml", data_root=str(data_root), resume=True,
                    overrides=common + ["name=resume_b"])
    losses_b = [json.loads(line)["loss"] for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert len(losses_a) == len(losses_b) > 7
    assert losses_b == pytest.approx(losses_a, rel=1e-5, abs=1e-6)

    # the final checkpoint reloads into a fresh model to identical outputs
    cfg = load_run(RUNS / "tiny_stage2.yaml", common + ["name=resume_a"])
    tokenizer = build_tokenizer(cfg, data_root, straight)
    fresh = build_model(cfg, tokenizer, data_root)
    load_trainable(fresh, latest_checkpoint(straight))
    loader, _ = make_run_loader(cfg, tokenizer, fresh, data_root)
    batch = next(iter(loader))
    trained = build_model(cfg, tokenizer, data_root)
    load_trainable(trained, latest_checkpoint(straight))
    fresh.eval(), trained.eval()
    with torch.no_grad():
        args = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=batch["pixel_values"])
        assert torch.equal(fresh(**args).logits, trained(**args).logits)
