"""Run recipes (manifests/runs/*.yaml) and their config: every shipped recipe validates; the Imp-3B
recipes carry docs/training.md §4's hyper-parameters; `--set` overrides apply; `validate()` reports every problem
at once; the optimizer has LLaVATrainer's groups and HF's warmup + cosine schedule.

Run: pytest tests/test_train_config.py
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from imp_data.core.errors import RecipeError
from imp_data.train.config import load_run
from imp_data.train.loop import build_optimizer
from tests.train_support import RUNS


@pytest.mark.parametrize("name", ["imp3b_stage1", "imp3b_stage2", "tiny_stage1", "tiny_stage2"])
def test_shipped_recipes_validate(name):
    cfg = load_run(RUNS / f"{name}.yaml")
    assert cfg.name == name and cfg.template == ("plain" if cfg.stage == 1 else "phi2")


def test_imp3b_recipes_carry_the_paper_values():
    s1, s2 = load_run(RUNS / "imp3b_stage1.yaml"), load_run(RUNS / "imp3b_stage2.yaml")
    gpus = 8
    assert (s1.train.lr, s1.train.batch_size * s1.train.grad_accum * gpus, s1.train.epochs) == (1e-3, 256, 1)
    assert (s2.train.lr, s2.train.projector_lr, s2.train.epochs) == (2e-4, 2e-5, 2)
    assert s2.train.batch_size * s2.train.grad_accum * gpus == 128
    assert (s2.lora.r, s2.lora.alpha, s2.lora.dropout, s2.lora.include_lm_head) == (256, 256, 0.05, True)
    for cfg in (s1, s2):
        assert (cfg.train.warmup_ratio, cfg.train.weight_decay, cfg.train.model_max_length) == (0.03, 0.0, 3072)
    assert s2.train.group_by_modality_length and s2.model.init_projector == "imp3b_stage1"


def test_overrides_and_all_problems_reported(tmp_path):
    cfg = load_run(RUNS / "tiny_stage2.yaml", ["train.lr=5e-4", "lora.r=4", "name=other"])
    assert (cfg.train.lr, cfg.lora.r, cfg.name) == (5e-4, 4, "other")
    with pytest.raises(RecipeError) as err:
        load_run(RUNS / "tiny_stage2.yaml", ["stage=3", "template=vicuna", "train.batch_size=0",
                                             "train.overlength=cut"])
    for problem in ("stage", "template", "train.batch_size", "train.overlength"):
        assert problem in str(err.value)
    with pytest.raises(RecipeError, match="unknown field.*'lerning_rate'"):
        load_run(RUNS / "tiny_stage2.yaml", ["train.lerning_rate=1"])
    with pytest.raises(RecipeError, match="KEY.PATH=VALUE"):
        load_run(RUNS / "tiny_stage2.yaml", ["train.lr"])


def test_optimizer_groups_and_schedule():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.mm_projector = nn.Sequential(nn.Linear(2, 2), nn.GELU(), nn.Linear(2, 2))
            self.llm = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))

    cfg = load_run(RUNS / "imp3b_stage2.yaml", ["train.weight_decay=0.1"])
    optimizer, scheduler = build_optimizer(cfg, Toy(), total_steps=100)
    groups = {(g["initial_lr"], g["weight_decay"], sum(p.numel() for p in g["params"])) for g in optimizer.param_groups}
    # projector: weights 2x(2x2) decayed, biases 2x2 not; LLM: Linear weight decayed, its bias + LayerNorm not
    assert groups == {(2e-5, 0.1, 8), (2e-5, 0.0, 4), (2e-4, 0.1, 4), (2e-4, 0.0, 6)}
    llm_group = next(g for g in optimizer.param_groups if g["initial_lr"] == 2e-4)
    lrs = []
    for _ in range(100):
        lrs.append(llm_group["lr"])
        optimizer.step()
        scheduler.step()
    warmup = math.ceil(0.03 * 100)
    assert lrs[0] == 0 and lrs[warmup] == pytest.approx(2e-4)  # linear warmup from 0 over 3 steps
    assert lrs[warmup + 1] < lrs[warmup] and lrs[-1] < 1e-6  # then cosine down to 0
    assert lrs[(100 + warmup) // 2] == pytest.approx(1e-4, rel=0.05)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR)
