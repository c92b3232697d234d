"""Training parity with Imp (issue 17): the imp3b run recipes carry Imp's precision and clipping — fp16 with
dynamic loss scaling, TF32 off, no gradient clipping (scripts/pretrain.sh and finetune_lora.sh pass
`--fp16 True --bf16 False --tf32 False`; their DeepSpeed configs zero2/zero3.json scale the loss from 2^16
with a 1000-step window and set no `gradient_clipping`) — with bf16 variants for newer GPUs; and the
optimizer step clips only when a norm is set.

Run: pytest tests/test_train_precision.py
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imp_data.train.config import load_run
from imp_data.train.precision import FP16_SCALER, Precision
from tests.conftest import ROOT

RUNS = ROOT / "manifests" / "runs"


@pytest.mark.parametrize("name", ["imp3b_stage1", "imp3b_stage2"])
def test_imp3b_recipes_train_as_imps_scripts(name):
    cfg = load_run(RUNS / f"{name}.yaml")
    assert (cfg.train.precision, cfg.train.tf32, cfg.train.max_grad_norm) == ("fp16", False, None)
    assert cfg.model.frozen_dtype == "float16"
    bf16 = load_run(RUNS / f"{name}_bf16.yaml")
    assert (bf16.train.precision, bf16.model.frozen_dtype, bf16.train.max_grad_norm) == ("bf16", "bfloat16", None)
    same = {k: v for k, v in cfg.to_dict()["train"].items() if k not in ("precision", "tf32")}
    assert same == {k: v for k, v in bf16.to_dict()["train"].items() if k not in ("precision", "tf32")}
    if name == "imp3b_stage2":
        assert bf16.model.init_projector == "imp3b_stage1_bf16"


def test_fp16_loss_scale_follows_imps_deepspeed_config():
    # scripts/zero2.json and zero3.json: "initial_scale_power": 16, "loss_scale_window": 1000
    assert FP16_SCALER["init_scale"] == 2.0 ** 16 and FP16_SCALER["growth_interval"] == 1000


def test_cpu_runs_float32_without_a_scaler():
    amp = Precision("fp16", torch.device("cpu"))
    assert amp.dtype == torch.float32 and amp.scaler is None and amp.state_dict() == {}
    with pytest.raises(ValueError, match="'bf16', 'fp16' or 'fp32'"):
        Precision("int8", torch.device("cpu"))


@pytest.mark.parametrize("max_norm", [None, 0.0, 1.0])
def test_step_clips_only_when_a_norm_is_set(max_norm):
    torch.manual_seed(0)
    layer = nn.Linear(8, 8)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    (layer(torch.randn(4, 8)) * 100).sum().backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    before = [p.detach().clone() for p in layer.parameters()]
    norm = Precision("fp16", torch.device("cpu")).step(optimizer, list(layer.parameters()), max_norm)
    total = torch.norm(torch.stack([g.norm() for g in grads]))
    assert torch.isclose(norm, total) and total > 1.0
    scale = 1.0 if not max_norm else max_norm / float(total)
    for p, b, g in zip(layer.parameters(), before, grads):
        assert torch.allclose(p.detach(), b - g * min(1.0, scale), atol=1e-5)
