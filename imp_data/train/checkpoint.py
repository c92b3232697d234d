"""Checkpoints: the trained weights plus everything needed to resume exactly, written atomically.

A checkpoint is a directory `RUN/checkpoints/step-NNNNNNN/`:
- `mm_projector.pt` — the projector (both stages; Imp's `mm_projector.bin` / `non_lora_trainables.bin`);
- `adapter/` — stage 2's LoRA adapters in peft's own format (`adapter_model.safetensors`), so peft and
  other LLaVA-family tools can read them;
- `state.pt` — optimizer, scheduler, loader position, every rank's RNG states and the step;
- `meta.json` — the resolved run config and facts about the run (nanoGPT/nanochat: weights + JSON meta).

The directory is written under a temporary name and renamed when complete; `checkpoints/latest`, which
names the newest one, is written last — a kill at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from imp_data.core.errors import ImpDataError
from imp_data.core.io import write_text_atomic

ADAPTER_DIR, PROJECTOR_FILE = "adapter", "mm_projector.pt"


def rng_state() -> dict:
    """This process's RNG states (dropout masks depend on them)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _has_lora(model) -> bool:
    return hasattr(model.llm, "peft_config")


def save_checkpoint(run_dir: Path, step: int, *, model, optimizer, scheduler, loader_state: dict,
                    rng_states: list[dict], meta: dict, scaler: dict | None = None) -> Path:
    """Write checkpoint `step` of `run_dir` atomically (call on rank 0; `rng_states` holds every rank's)."""
    ckpt_dir = run_dir / "checkpoints"
    final, tmp = ckpt_dir / f"step-{step:07d}", ckpt_dir / f".step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({k: v.detach().cpu() for k, v in model.mm_projector.state_dict().items()}, tmp / PROJECTOR_FILE)
    if _has_lora(model):
        # the LoRA weights only: peft would otherwise copy the whole lm_head, a LoRA target in Imp
        model.llm.save_pretrained(tmp / ADAPTER_DIR, save_embedding_layers=False)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "loader": loader_state,
                "rng": rng_states, "step": step, "scaler": scaler or {}}, tmp / "state.pt")
    (tmp / "meta.json").write_text(json.dumps({**meta, "step": step}, indent=2, sort_keys=True, default=str))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    write_text_atomic(ckpt_dir / "latest", final.name + "\n")
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if path.is_dir() else None


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint directory, or a run directory (its latest checkpoint)."""
    path = Path(path)
    if (path / PROJECTOR_FILE).is_file():
        return path
    ckpt = latest_checkpoint(path)
    if ckpt is None:
        raise ImpDataError(f"{path}: no checkpoint here — train the run first (imp-data train RUN)")
    return ckpt


def load_projector(model, ckpt: Path) -> None:
    """Stage 2 starts from stage 1's projector (Imp's `--pretrain_mm_mlp_adapter`)."""
    path = resolve_checkpoint(ckpt) / PROJECTOR_FILE
    model.mm_projector.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def load_trainable(model, ckpt: Path) -> None:
    """Load a checkpoint's trained weights (projector, and adapters for stage 2) into a model built the
    same way; the frozen parts come from the model's own construction (same weights path or seed)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    ckpt = resolve_checkpoint(ckpt)
    load_projector(model, ckpt)
    adapter = ckpt / ADAPTER_DIR / "adapter_model.safetensors"
    if _has_lora(model) != adapter.is_file():
        raise ImpDataError(f"{ckpt}: {'no' if _has_lora(model) else 'unexpected'} LoRA adapters for this model "
                           "— load a checkpoint of the same stage")
    if adapter.is_file():
        result = set_peft_model_state_dict(model.llm, load_file(str(adapter)))
        lora_missing = [k for k in result.missing_keys if "lora_" in k]
        if result.unexpected_keys or lora_missing:
            raise ImpDataError(f"{adapter}: adapters do not fit this model "
                               f"(unexpected {result.unexpected_keys[:3]}, missing {lora_missing[:3]})")


def load_resume_state(ckpt: Path) -> dict:
    """`state.pt` of a checkpoint (optimizer, scheduler, loader, per-rank RNG, step)."""
    # not weights_only: the RNG states are Python/numpy objects this process wrote itself
    return torch.load(Path(ckpt) / "state.pt", map_location="cpu", weights_only=False)
