"""Checkpoints: the trainable weights plus everything needed to resume exactly, written atomically.

Stage 1 keeps the projector (`mm_projector.pt`), stage 2 the LoRA adapters and the projector
(`trainable.pt`); both carry the optimizer, scheduler, loader position and RNG states (`state.pt`) and
the resolved config (`meta.json`). A checkpoint directory is written under a temporary name and renamed
when complete; `latest` names the newest one and is written last.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from imp_data.io import write_text_atomic


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, *, model, optimizer, scheduler, loader_state: dict, meta: dict) -> Path:
    ckpt_dir = run_dir / "checkpoints"
    final = ckpt_dir / f"step-{step:07d}"
    tmp = ckpt_dir / f".step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = trainable_state(model)
    projector = {k.removeprefix("mm_projector."): v for k, v in weights.items() if k.startswith("mm_projector.")}
    torch.save(projector, tmp / "mm_projector.pt")
    torch.save(weights, tmp / "trainable.pt")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "loader": loader_state,
                "rng": rng_state(), "step": step}, tmp / "state.pt")
    (tmp / "meta.json").write_text(json.dumps({**meta, "step": step}, indent=2, sort_keys=True, default=str))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    write_text_atomic(ckpt_dir / "latest", final.name + "\n")
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if path.is_dir() else None


def load_trainable(model: torch.nn.Module, ckpt: Path) -> None:
    """Load a checkpoint's trainable weights into a model built the same way."""
    weights = torch.load(ckpt / "trainable.pt", map_location="cpu", weights_only=True)
    missing = set(weights) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"{ckpt}: weights for {sorted(missing)[:3]}... do not match this model")
    model.load_state_dict(weights, strict=False)


def load_projector(model: torch.nn.Module, ckpt: Path) -> None:
    """Stage 2 starts from stage 1's projector (Imp's `pretrain_mm_mlp_adapter`)."""
    model.mm_projector.load_state_dict(torch.load(ckpt / "mm_projector.pt", map_location="cpu", weights_only=True))
