"""FLOPs per training step and the GPU's peak, for the MFU the loop logs and the benches report.

An estimate from parameter counts (Kaplan / nanoGPT style), not a profiler: counted the same way for every
run, so runs compare, and cheap enough to add up every micro-batch.
"""

from __future__ import annotations

import torch

from imp_data.train.model import ImpModel

# dense bf16 peak per GPU, for MFU (spec sheets, no sparsity)
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def flop_counts(model: ImpModel) -> dict:
    """The parameter counts `step_flops` needs, taken once."""
    llm = model.llm.config
    return {"llm": sum(p.numel() for n, p in model.llm.named_parameters() if "embed_tokens" not in n),
            "llm_trainable": sum(p.numel() for p in model.llm.parameters() if p.requires_grad),
            "vision": sum(p.numel() for p in model.vision_tower.parameters()),
            "projector": sum(p.numel() for p in model.mm_projector.parameters()),
            "layers": llm.num_hidden_layers, "width": llm.hidden_size, "num_patches": model.num_patches}


def step_flops(counts: dict, tokens: int, n_images: int, seq_len: float) -> float:
    """FLOPs one training pass needs (recompute not counted): the LLM forward (2N per token) and its
    backward to the activations (2N; always run, to reach the projector), weight gradients (2N) of the
    trainable LLM weights only, attention scores forward + backward (12·layers·width·seq per token), the
    frozen tower's forward (2N per patch) and the projector's forward + backward (6N per patch).

    Example:
        >>> c = {"llm": 100, "llm_trainable": 10, "vision": 50, "projector": 5, "layers": 2, "width": 4,
        ...      "num_patches": 3}
        >>> step_flops(c, tokens=10, n_images=1, seq_len=10)
        14190
    """
    attention = 12 * counts["layers"] * counts["width"] * seq_len
    patches = counts["num_patches"] * n_images
    return ((4 * counts["llm"] + 2 * counts["llm_trainable"] + attention) * tokens
            + 2 * counts["vision"] * patches + 6 * counts["projector"] * patches)


def llm_tokens(batch: dict, num_patches: int) -> int:
    """Sequence positions the LLM processes: text tokens plus `num_patches` per image."""
    n_images = 0 if batch.get("pixel_values") is None else len(batch["pixel_values"])
    return int(batch["attention_mask"].sum()) + n_images * (num_patches - 1)


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak (None: a CPU, or a GPU not in PEAK_FLOPS)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])) if k in name), None)
