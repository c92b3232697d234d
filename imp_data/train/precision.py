"""Mixed precision on the GPU, as Imp trains (fp16 with dynamic loss scaling, TF32 off, no clipping) or as
newer GPUs prefer (bf16, no scaler needed).

Imp's scripts pass `--fp16 True --bf16 False --tf32 False` to HF's Trainer under DeepSpeed, whose configs
(`scripts/zero2.json`, `zero3.json`) scale the loss dynamically (initial scale 2^16, doubled after 1000
overflow-free steps) and set no `gradient_clipping`, so gradients are never clipped. `torch.amp.GradScaler`
does the same scaling (without DeepSpeed's two-overflow hysteresis: it halves on every overflow step and
skips that step's update, as DeepSpeed does). On the CPU everything stays float32 and no scaler runs.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
FP16_SCALER = {"init_scale": 2.0 ** 16, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 1000}


class Precision:
    """The autocast dtype, the loss scaler (fp16 on CUDA only) and the optimizer step around them."""

    def __init__(self, precision: str, device: torch.device):
        if precision not in DTYPES:
            raise ValueError(f"precision {precision!r}: 'bf16', 'fp16' or 'fp32'")
        self.cuda = device.type == "cuda"
        self.dtype = DTYPES[precision] if self.cuda else torch.float32
        self.scaler = torch.amp.GradScaler("cuda", **FP16_SCALER) if self.cuda and precision == "fp16" else None

    def autocast(self):
        """The forward's autocast context (none in float32)."""
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer, params: list[nn.Parameter], max_grad_norm: float | None) -> torch.Tensor:
        """Unscale, clip when `max_grad_norm` is set (else only measure the norm, for the log), step, and
        update the scale; returns the gradient norm."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        norm = nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else float("inf"))
        if self.scaler is not None:
            self.scaler.step(optimizer)  # skipped when the scaled gradients overflowed
            self.scaler.update()
        else:
            optimizer.step()
        return norm

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def set_tf32(enabled: bool) -> None:
    """TF32 matmuls and convolutions on Ampere and newer (Imp: off)."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
