"""Run recipes (`manifests/runs/*.yaml`): typed config declared once, validated all at once.

Dataclasses with the meaning of every field next to it; `load_run` applies `--set a.b=value`
overrides, and `validate()` collects every problem before raising. The resolved config is written
into each checkpoint's meta.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imp_data.errors import RecipeError


@dataclass
class ModelConfig:
    vision: Any = None
    """Path to a SigLIP checkpoint (local), or SiglipVisionConfig kwargs for a tiny random tower."""
    llm: Any = None
    """Path to a causal LM (local; phi-2 for Imp-3B), or PhiConfig kwargs for a tiny random LM."""
    tokenizer: str | None = None
    """Path to a tokenizer; null = train a tiny byte-level BPE on the mix's texts."""
    tokenizer_vocab_size: int = 512
    """Vocabulary of the tiny tokenizer."""
    init_projector: str | None = None
    """Stage 2: the stage-1 run name (or checkpoint dir) whose projector to start from."""


@dataclass
class LoraConfig:
    r: int = 256
    """Imp-v1.5: rank 256 (TRAINING §4; LLaVA-1.5 used 128)."""
    alpha: int = 256
    """Imp-v1.5: alpha 256 (scale 1.0)."""
    dropout: float = 0.05
    include_lm_head: bool = True
    """Imp keeps lm_head among the LoRA targets (LLaVA removes it)."""


@dataclass
class TrainConfig:
    epochs: int = 1
    max_steps: int | None = None
    """Total optimizer steps the schedule is built for (null: all epochs)."""
    stop_after: int | None = None
    """Save and stop after this many steps WITHOUT changing the schedule (time-boxed jobs; `--resume` goes on)."""
    batch_size: int = 4
    """Per-device batch size."""
    grad_accum: int = 1
    lr: float = 1e-3
    projector_lr: float | None = None
    """Separate projector learning rate (Imp stage 2: 2e-5); null = lr."""
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    model_max_length: int = 3072
    """Cap on tokens after image features are inserted (Imp: 3072)."""
    overlength: str = "truncate"
    """'truncate' or 'drop' samples longer than model_max_length (counted either way)."""
    seed: int = 0
    num_workers: int = 0
    group_by_modality_length: bool = False
    gradient_checkpointing: bool = False
    save_every: int = 0
    """Save a resumable checkpoint every N steps (0: only at the end)."""
    log_every: int = 1


@dataclass
class RunConfig:
    name: str = ""
    stage: int = 1
    """1: projector only (plain template); 2: LoRA on the LLM + projector (phi2 template)."""
    mix: str = ""
    """The mix to stream: DATA/mixes/<mix>."""
    data_root: str = "demo-data"
    template: str = "plain"
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        problems = []
        if not self.name:
            problems.append("name: required")
        if self.stage not in (1, 2):
            problems.append(f"stage: must be 1 or 2, not {self.stage}")
        if self.template not in ("plain", "phi2"):
            problems.append(f"template: must be 'plain' or 'phi2', not {self.template!r}")
        if not self.mix:
            problems.append("mix: required (the mix whose shards to stream)")
        if self.model.vision is None or self.model.llm is None:
            problems.append("model.vision and model.llm: required (a local path or tiny config kwargs)")
        if self.train.overlength not in ("truncate", "drop"):
            problems.append("train.overlength: 'truncate' or 'drop'")
        for key in ("batch_size", "grad_accum", "epochs"):
            if getattr(self.train, key) < 1:
                problems.append(f"train.{key}: must be >= 1")
        if problems:
            raise RecipeError(f"run recipe {self.name or '?'}: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls, data: dict, path: str):
    if not isinstance(data, dict):
        raise RecipeError(f"{path or 'run'}: expected a mapping")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise RecipeError(f"{path or 'run'}: unknown field(s) {unknown}; valid: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        sub = {"model": ModelConfig, "lora": LoraConfig, "train": TrainConfig}.get(key) if cls is RunConfig else None
        kwargs[key] = _build(sub, value, f"{path}{key}.") if sub else value
    return cls(**kwargs)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """`a.b=value` (value parsed as YAML) into the raw mapping."""
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"--set {item!r}: expected KEY.PATH=VALUE")
        key, value = item.split("=", 1)
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return raw


def load_run(path: str | Path, overrides: list[str] | tuple = ()) -> RunConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise RecipeError(f"{path}: cannot read run recipe ({err})") from None
    cfg = _build(RunConfig, apply_overrides(raw, list(overrides)), "")
    for key in ("lr", "projector_lr", "warmup_ratio", "weight_decay", "max_grad_norm"):  # YAML reads 1e-3 as str
        value = getattr(cfg.train, key)
        if isinstance(value, str):
            setattr(cfg.train, key, float(value))
    cfg.validate()
    return cfg
