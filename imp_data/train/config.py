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

from imp_data.core.errors import RecipeError


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
    """Stage 2: the stage-1 run name (under DATA/runs) or checkpoint dir whose projector to start from."""
    frozen_dtype: str = "float32"
    """dtype of the frozen weights (vision tower, base LLM): bfloat16 on GPU halves their memory and
    traffic (Imp casts to fp16); trainable weights (projector, LoRA) stay float32 either way."""


@dataclass
class LoraConfig:
    r: int = 256
    """Imp-v1.5: rank 256 (docs/training.md §4; LLaVA-1.5 used 128)."""
    alpha: int = 256
    """Imp-v1.5: alpha 256 (scale 1.0)."""
    dropout: float = 0.05
    """peft's default, which Imp keeps."""
    include_lm_head: bool = True
    """Imp keeps lm_head among the LoRA targets (LLaVA removes it)."""


@dataclass
class TrainConfig:
    epochs: int = 1
    """Passes over the mix (Imp stage 2: 2)."""
    max_steps: int | None = None
    """Total optimizer steps the schedule is built for (null: all epochs)."""
    stop_after: int | None = None
    """Save and stop after this many steps WITHOUT changing the schedule (time-boxed jobs; `--resume` goes on)."""
    batch_size: int = 4
    """Per-device batch size."""
    grad_accum: int = 1
    """Micro-batches per optimizer step: global batch = batch_size x grad_accum x world size."""
    lr: float = 1e-3
    """Peak learning rate of everything that is not the projector."""
    projector_lr: float | None = None
    """Separate projector learning rate (Imp stage 2: 2e-5); null = lr."""
    warmup_ratio: float = 0.03
    """Linear warmup over this share of the steps, then cosine to zero (HF's schedule)."""
    weight_decay: float = 0.0
    """Applied to weights, not to biases or norms (LLaVATrainer's groups); Imp uses 0."""
    max_grad_norm: float | None = 1.0
    """Clip the gradient norm to this; null or 0 = no clipping (Imp: its DeepSpeed configs set none)."""
    precision: str = "bf16"
    """GPU autocast: 'bf16', 'fp16' (dynamic loss scaling, as Imp trains) or 'fp32'; the CPU runs float32."""
    tf32: bool = True
    """TF32 matmuls on Ampere and newer (Imp: --tf32 False)."""
    model_max_length: int = 3072
    """Cap on tokens after image features are inserted (Imp: 3072)."""
    overlength: str = "truncate"
    """'truncate' or 'drop' samples longer than model_max_length (counted either way)."""
    seed: int = 0
    """Seeds the sample order (with the epoch), random-init weights and dropout."""
    num_workers: int = 0
    """Loader worker processes per rank."""
    group_by_modality_length: bool = False
    """LLaVA's sampler: megabatches of one modality, sorted by length (Imp stage 2)."""
    packing: bool = False
    """Put each micro-batch's samples side by side in one row (block-diagonal attention, position ids
    restarting per sample) instead of padding them to the longest: no padding position is computed, and
    the loss and gradients are the padded batch's (imp_data/train/packing.py). Same batches, same order."""
    on_corrupt: str = "raise"
    """A corrupt shard member: 'raise' (naming the shard) or 'skip' (counted)."""
    trust_shards: bool = False
    """Skip checking each member read against its sha256 in index.parquet (`--trust-shards`): only for
    storage trusted end to end, or a mix built before the index had member hashes. Sizes are checked anyway."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (Imp: on) — less memory, ~30% more compute."""
    cpu_threads: int | None = None
    """torch threads when training on CPU (null: torch's default); tiny models run fastest on 1."""
    save_every: int = 0
    """Save a resumable checkpoint every N steps (0: only at the end)."""
    log_every: int = 1
    """Write a log line (and a console line) every N steps."""


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
        if self.train.on_corrupt not in ("raise", "skip"):
            problems.append("train.on_corrupt: 'raise' or 'skip'")
        if self.train.precision not in ("bf16", "fp16", "fp32"):
            problems.append("train.precision: 'bf16', 'fp16' or 'fp32'")
        for key in ("trust_shards", "packing", "tf32"):
            if not isinstance(getattr(self.train, key), bool):
                problems.append(f"train.{key}: true or false")
        if self.model.frozen_dtype not in ("float32", "bfloat16", "float16"):
            problems.append("model.frozen_dtype: 'float32', 'bfloat16' or 'float16'")
        for key in ("batch_size", "grad_accum", "epochs", "log_every", "model_max_length"):
            if getattr(self.train, key) < 1:
                problems.append(f"train.{key}: must be >= 1")
        if not self.train.lr > 0 or (self.train.projector_lr is not None and not self.train.projector_lr > 0):
            problems.append("train.lr / train.projector_lr: must be > 0")
        if not 0 <= self.train.warmup_ratio < 1:
            problems.append("train.warmup_ratio: must be in [0, 1)")
        if self.stage == 2 and not (self.lora.r >= 1 and self.lora.alpha > 0 and 0 <= self.lora.dropout < 1):
            problems.append("lora: r >= 1, alpha > 0 and 0 <= dropout < 1")
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


def run_from_dict(raw: dict, source: str = "run") -> RunConfig:
    """A validated RunConfig from its mapping (a recipe's YAML, or a checkpoint's resolved config)."""
    cfg = _build(RunConfig, raw, "")
    for key in ("lr", "projector_lr", "warmup_ratio", "weight_decay", "max_grad_norm"):  # YAML reads 1e-3 as str
        value = getattr(cfg.train, key)
        if value is None and key == "max_grad_norm":
            continue  # no clipping
        if isinstance(value, str):
            try:
                setattr(cfg.train, key, float(value))
            except ValueError:
                raise RecipeError(f"{source}: train.{key}: {value!r} is not a number") from None
    cfg.validate()
    return cfg


def load_run(path: str | Path, overrides: list[str] | tuple = ()) -> RunConfig:
    """Read a run recipe, apply `--set` overrides, validate.

    Example:
        >>> cfg = load_run("manifests/runs/tiny_stage2.yaml", ["train.lr=1e-3", "lora.r=4"])
        >>> (cfg.stage, cfg.template, cfg.train.lr, cfg.lora.r)
        (2, 'phi2', 0.001, 4)
    """
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise RecipeError(f"{path}: cannot read run recipe ({err})") from None
    return run_from_dict(apply_overrides(raw, list(overrides)), str(path))
