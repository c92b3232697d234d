"""Training on the demo shards with the tiny recipes (manifests/runs/tiny_stage*.yaml):
- stage 1 (projector only) and stage 2 (LoRA + projector) overfit a fixed batch: loss falls >= 80%;
- stage 2's LoRA covers every LLM linear incl. lm_head, and the vision tower stays frozen;
- `train()` runs stage 1 -> stage 2 (projector handed over), logs, and writes each stage's checkpoint;
- a checkpoint reloads into a freshly built model to identical outputs (both stages);
- a run stopped mid-epoch and resumed sees the same batches and logs the same losses as an
  uninterrupted one.

Run: pytest tests/test_train_loop.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imp_data.train.checkpoint import latest_checkpoint, load_resume_state, load_trainable, rng_state, save_checkpoint
from imp_data.train.config import load_run
from imp_data.train.loop import build_model, build_optimizer, build_tokenizer, forward_loss, make_run_loader, train
from tests.train_support import RUNS, demo_data_root, one_thread  # noqa: F401 (autouse fixture)

CPU = torch.device("cpu")



@pytest.fixture(scope="module")
def data_root(demo_build, tmp_path_factory) -> Path:
    """A data root whose mixes are the session's demo mixes (runs are written here, not there)."""
    return demo_data_root(demo_build[0], tmp_path_factory.mktemp("train"))


def setup(stage_yaml: str, data_root: Path, *overrides: str):
    cfg = load_run(RUNS / stage_yaml, ["model.init_projector=null", *overrides])
    tokenizer = build_tokenizer(cfg, data_root, data_root / "runs" / f"tok_{cfg.name}")
    model = build_model(cfg, tokenizer, data_root)
    return cfg, tokenizer, model


def first_batch(cfg, tokenizer, model, data_root):
    return next(iter(make_run_loader(cfg, tokenizer, model, data_root)))


def fit(model, batch, lr: float, steps: int) -> list[float]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = forward_loss(model, batch, CPU)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_stage1_projector_aligns_images_to_a_frozen_llm(data_root):
    """Stage 1 trains only the projector, so it needs an LLM that already reads its input (Phi-2 does);
    over a random frozen LLM nothing can fit. So the tiny LLM is first taught the batch together with a
    throw-away projector, then frozen; a FRESH projector, trained alone exactly as stage 1 trains it, must
    bring the loss down >= 80% — i.e. learn to map the tower's features to what the LLM understands."""
    cfg, _, model = setup("tiny_stage1.yaml", data_root, "train.batch_size=2")
    batch = first_batch(cfg, _, model, data_root)
    assert batch["pixel_values"] is not None and batch["pixel_values"].shape[-1] == model.image_size
    model.llm.requires_grad_(True)
    fit(model, batch, lr=3e-3, steps=80)
    model.llm.requires_grad_(False)
    torch.manual_seed(1)
    for layer in model.mm_projector:
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == \
        ["mm_projector.0.weight", "mm_projector.0.bias", "mm_projector.2.weight", "mm_projector.2.bias"]
    losses = fit(model, batch, lr=1e-2, steps=40)
    assert min(losses[-5:]) <= 0.2 * losses[0], (losses[0], losses[-5:])


def test_stage2_overfits_a_fixed_batch(data_root):
    cfg, tokenizer, model = setup("tiny_stage2.yaml", data_root, "train.batch_size=2")
    losses = fit(model, first_batch(cfg, tokenizer, model, data_root), lr=1e-2, steps=60)
    assert min(losses[-5:]) <= 0.2 * losses[0], (losses[0], losses[-5:])


def test_stage2_lora_targets_and_frozen_tower(data_root):
    cfg, tokenizer, model = setup("tiny_stage2.yaml", data_root)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    for target in ("lm_head", "q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"):
        assert any(f"{target}.lora_A" in n for n in trainable), target
    assert all(n.startswith("mm_projector.") or ".lora_" in n for n in trainable)
    batch = first_batch(cfg, tokenizer, model, data_root)
    model.train()
    forward_loss(model, batch, CPU).backward()
    assert not model.vision_tower.training
    assert all(p.grad is None for p in model.vision_tower.parameters())
    assert all(p.grad is None for n, p in model.llm.named_parameters() if "lora_" not in n)
    lm_head_a = next(p for n, p in model.named_parameters() if "lm_head.lora_A" in n)
    assert model.mm_projector[0].weight.grad.abs().sum() > 0 and lm_head_a.grad is not None


def test_stage1_then_stage2_runs_and_checkpoints(data_root):
    s1 = train(RUNS / "tiny_stage1.yaml", data_root=data_root, overrides=["name=s1", "train.max_steps=2"])
    ckpt1 = latest_checkpoint(s1)
    assert sorted(p.name for p in ckpt1.iterdir()) == ["meta.json", "mm_projector.pt", "state.pt"]
    meta = json.loads((ckpt1 / "meta.json").read_text())
    assert meta["config"]["name"] == "s1" and meta["step"] == 2 and meta["image"]["mode"] in ("pad", "squash",
                                                                                              "expand2square")
    s2 = train(RUNS / "tiny_stage2.yaml", data_root=data_root,
               overrides=["name=s2", "train.max_steps=2", "model.init_projector=s1"])
    ckpt2 = latest_checkpoint(s2)
    adapter = json.loads((ckpt2 / "adapter" / "adapter_config.json").read_text())
    assert "lm_head" in adapter["target_modules"] and adapter["r"] == 8
    log = [json.loads(line) for line in (s2 / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert {"loss", "lr", "samples_per_s", "tokens_per_s", "skipped", "truncated"} <= set(log[0])
    # stage 2 started from stage 1's projector
    cfg = load_run(RUNS / "tiny_stage2.yaml", ["name=s2", "model.init_projector=s1"])
    started = build_model(cfg, build_tokenizer(cfg, data_root, s2), data_root)
    stage1 = torch.load(ckpt1 / "mm_projector.pt", weights_only=True)
    assert all(torch.equal(started.mm_projector.state_dict()[k], v) for k, v in stage1.items())


@pytest.mark.parametrize("stage_yaml", ["tiny_stage1.yaml", "tiny_stage2.yaml"])
def test_checkpoint_reloads_to_identical_outputs(stage_yaml, data_root, tmp_path):
    cfg, tokenizer, model = setup(stage_yaml, data_root)
    batch = first_batch(cfg, tokenizer, model, data_root)
    optimizer, scheduler = build_optimizer(cfg, model, total_steps=10)
    for _ in range(3):
        forward_loss(model, batch, CPU).backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    ckpt = save_checkpoint(tmp_path, 3, model=model, optimizer=optimizer, scheduler=scheduler,
                           loader_state={}, rng_states=[rng_state()], meta={})
    fresh = build_model(cfg, tokenizer, data_root)
    load_trainable(fresh, ckpt)
    model.eval(), fresh.eval()
    args = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    with torch.no_grad():
        assert torch.equal(fresh(**args).logits, model(**args).logits)
        untrained = build_model(cfg, tokenizer, data_root).eval()
        assert not torch.equal(untrained(**args).logits, model(**args).logits)


def test_resume_mid_epoch_matches_uninterrupted(data_root):
    common = ["train.epochs=1", "lora.dropout=0.05", "train.batch_size=8",  # dropout: RNG state must resume too
              "model.init_projector=null"]
    straight = train(RUNS / "tiny_stage2.yaml", data_root=data_root, overrides=common + ["name=resume_a"])
    losses_a = [json.loads(line)["loss"] for line in (straight / "log.jsonl").read_text().splitlines()]
    # the same run stopped after 3 steps — mid-epoch — then resumed to the end
    part = train(RUNS / "tiny_stage2.yaml", data_root=data_root,
                 overrides=common + ["name=resume_b", "train.stop_after=3"])
    state = load_resume_state(latest_checkpoint(part))
    assert state["step"] == 3 and 0 < state["loader"]["next_batch"] < len(losses_a), "stopped mid-epoch"
    resumed = train(RUNS / "tiny_stage2.yaml", data_root=data_root, resume=True, overrides=common + ["name=resume_b"])
    losses_b = [json.loads(line)["loss"] for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert len(losses_b) == len(losses_a) > 3
    assert losses_b == pytest.approx(losses_a, rel=1e-5, abs=1e-6)

    # the resumed loader yields exactly the batches the uninterrupted one had left
    cfg, tokenizer, model = setup("tiny_stage2.yaml", data_root, *common)
    whole = [b["keys"] for b in make_run_loader(cfg, tokenizer, model, data_root)]
    rest = make_run_loader(cfg, tokenizer, model, data_root)
    rest.load_state_dict(state["loader"])
    assert [b["keys"] for b in rest] == whole[state["loader"]["next_batch"]:]
