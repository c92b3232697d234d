"""`imp-data train RUN`: one training loop for both stages, read top to bottom.

Stage 1 trains the projector only (plain template); stage 2 adds LoRA on every linear layer of the LLM,
lm_head included, and keeps training the projector (phi2 template) — docs/training.md §4. The rest is the HF
Trainer setup Imp ran under: AdamW with the projector in its own parameter groups (LLaVATrainer),
linear warmup over 3% of the steps then cosine to zero, gradient accumulation, clipping, bf16 autocast on
CUDA (fp32 on CPU), DDP under torchrun (nccl on GPU, gloo on CPU). Every checkpoint resumes exactly:
weights, optimizer, scheduler, loader position and each rank's RNG states, so a killed run continues with
the same batches and the same losses.

The one design choice: everything a run needs is built by the small `build_*` functions at the top
(tokenizer, model, loader, optimizer), which the tests, the eval job and the benches reuse; `Trainer` holds
one rank's run between steps, and `train` is the loop (nanoGPT's shape: set up, then step, log and
checkpoint until the one stop condition holds). A run reads nothing of its mix but the shards.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imp_data.core.errors import ImpDataError
from imp_data.core.layout import Layout, MixDir
from imp_data.train.batching import make_collate, make_encode
from imp_data.train.checkpoint import (
    latest_checkpoint,
    load_projector,
    load_resume_state,
    load_trainable,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from imp_data.train.config import RunConfig, load_run
from imp_data.train.data import ShardLoader, make_loader
from imp_data.train.flops import flop_counts, peak_flops
from imp_data.train.model import ImpModel, ModelSpec
from imp_data.train.precision import Precision, set_tf32
from imp_data.train.runlog import StepLog
from imp_data.train.tokenizer import load_tokenizer, train_tiny_tokenizer

# ---------------------------------------------------------------------------------------------------------
# building blocks (also used by the tests, the eval job and bench/train_throughput.py)

def mix_dir(cfg: RunConfig, data_root: Path) -> Path:
    path = Layout(Path(data_root)).mix_to_read(cfg.mix)
    if not MixDir(path).index.is_file():
        raise ImpDataError(f"{path}: no shards for mix {cfg.mix!r} — build it first (imp-data build RECIPE)")
    return path


def mix_render(source: Path | ShardLoader) -> dict | None:
    """How the mix rendered its images (mode, fill, resolution, resampler), from its first sample with an image;
    kept in checkpoint meta so that evaluation renders benchmark images the same way. Read through the loader
    (a run's own, or a verifying one over the mix dir): verified, and a bad shard is its one-line ShardError."""
    loader = source if isinstance(source, ShardLoader) else make_loader(Path(source), encode=None, collate=list,
                                                                        batch_size=1, seed=0)
    record = loader.first_image()
    if loader is not source:
        loader.close()
    image = record["image"] if record else None
    return {k: image[k] for k in ("mode", "fill", "resolution", "resampler") if k in image} if image else None


def build_tokenizer(cfg: RunConfig, data_root: Path, run_dir: Path):
    """The run's tokenizer, kept in RUN/tokenizer. A tiny BPE trains on the texts the mix's shards carry (every
    turn of every KEY.json, in index order: the plan's texts, in its order), so a run needs no build tables."""
    saved = Path(run_dir) / "tokenizer"
    if saved.is_dir():
        return load_tokenizer(saved)
    if cfg.model.tokenizer:
        tokenizer = load_tokenizer(cfg.model.tokenizer)
    else:
        loader = make_loader(mix_dir(cfg, data_root), encode=None, collate=list, batch_size=1, seed=0,
                             on_corrupt=cfg.train.on_corrupt, verify=not cfg.train.trust_shards)
        texts = [turn["value"] for record in loader.records() for turn in record["conversations"]]
        loader.close()
        tokenizer = train_tiny_tokenizer(texts, cfg.model.tokenizer_vocab_size)
    tokenizer.save_pretrained(saved)
    return tokenizer


def build_model(cfg: RunConfig, tokenizer, data_root: Path | None = None, *, init_projector: bool = True) -> ImpModel:
    """The model of a run with the right parts trainable.

    Random-init parts are seeded from the run's seed, so the frozen weights a checkpoint does not store
    are rebuilt identically (tiny configs; real weights load from disk).
    """
    with torch.random.fork_rng():
        torch.manual_seed(cfg.train.seed)
        model = ImpModel(ModelSpec(vision=cfg.model.vision, llm=cfg.model.llm, vocab_size=len(tokenizer)))
    frozen = getattr(torch, cfg.model.frozen_dtype)
    model.vision_tower.to(frozen)
    model.llm.to(frozen)
    model.requires_grad_(False)
    if cfg.train.gradient_checkpointing:  # non-reentrant: works when only LoRA weights need grads
        model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.stage == 2:
        if cfg.model.init_projector and init_projector:
            source = Path(cfg.model.init_projector)
            load_projector(model, source if source.is_absolute() else Layout(Path(data_root)).runs() / source)
        from imp_data.train.lora import add_lora

        with torch.random.fork_rng():  # LoRA's A matrices are random too: same seed, same start
            torch.manual_seed(cfg.train.seed + 1)
            add_lora(model, cfg.lora)  # peft keeps the adapters in float32 over a bf16 base
    model.mm_projector.requires_grad_(True)
    return model


def build_optimizer(cfg: RunConfig, model: nn.Module, total_steps: int):
    """AdamW in LLaVATrainer's groups (projector apart; no decay on biases and norms) + HF cosine schedule."""
    norms = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = ("mm_projector" in name, not (name.endswith("bias") or id(p) in norms))
            groups.setdefault(key, []).append(p)
    param_groups = [{"params": params, "lr": (cfg.train.projector_lr or cfg.train.lr) if projector else cfg.train.lr,
                     "weight_decay": cfg.train.weight_decay if decay else 0.0}
                    for (projector, decay), params in sorted(groups.items())]
    optimizer = torch.optim.AdamW(param_groups, betas=(0.9, 0.999), eps=1e-8)
    warmup = math.ceil(cfg.train.warmup_ratio * total_steps)

    def schedule(step: int) -> float:  # transformers.get_cosine_schedule_with_warmup
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def make_run_loader(cfg: RunConfig, tokenizer, model: ImpModel, data_root: Path, rank: int = 0, world: int = 1):
    """The loader of a run for one rank; a megabatch (modality grouping) is one global batch, as LLaVA's."""
    encode = make_encode(tokenizer, cfg.template, cfg.train.model_max_length, model.num_patches, cfg.train.overlength)
    return make_loader(mix_dir(cfg, data_root), encode=encode, collate=make_collate(tokenizer),
                       batch_size=cfg.train.batch_size, seed=cfg.train.seed, rank=rank, world_size=world,
                       num_workers=cfg.train.num_workers, group_by_modality_length=cfg.train.group_by_modality_length,
                       megabatch=cfg.train.batch_size * world * cfg.train.grad_accum, on_corrupt=cfg.train.on_corrupt,
                       verify=not cfg.train.trust_shards)


def forward_loss(model, batch: dict, device: torch.device, packed: bool = False, precision=None) -> torch.Tensor:
    """The batch's mean loss; `packed`: its samples in one row, no padding (train.packing); `precision`: a
    `Precision` (default bf16 autocast on CUDA)."""
    batch = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
    cast = precision.autocast() if precision is not None else \
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with cast:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                     pixel_values=batch.get("pixel_values"), packed=packed).loss


# ---------------------------------------------------------------------------------------------------------
# the processes of a run

@dataclass
class Ranks:
    """This process's place in the job (torchrun's environment; one rank without it) and what `start` changed."""

    rank: int
    world: int
    device: torch.device
    owns_group: bool  # a caller that set up the process group (several runs in one process) keeps it
    threads: int  # the CPU threads before the run, put back by `close`

    @classmethod
    def start(cls, cfg: RunConfig) -> Ranks:
        """Take the device and the CPU threads the run asks for, and join the process group."""
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", 0))
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
            set_tf32(cfg.train.tf32)
        threads = torch.get_num_threads()
        if device.type == "cpu" and cfg.train.cpu_threads:
            torch.set_num_threads(cfg.train.cpu_threads)
        owns_group = world > 1 and not torch.distributed.is_initialized()
        if owns_group:
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(rank, world, device, owns_group, threads)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def gather(self, obj) -> list:
        """`obj` of every rank, in rank order (every rank takes part)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def mean(self, value: float) -> float:
        """The mean of `value` over the ranks (every rank takes part)."""
        if self.world == 1:
            return value
        t = torch.tensor([value], device=self.device, dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return t.item() / self.world

    def close(self) -> None:
        if self.owns_group:
            torch.distributed.destroy_process_group()
        torch.set_num_threads(self.threads)


# ---------------------------------------------------------------------------------------------------------
# one rank's run: set up, step, log, checkpoint

class Trainer:
    """One rank's run between steps: what setup built and where the run stands (`step` of `total`)."""

    def __init__(self, cfg: RunConfig, root: Path, ranks: Ranks, *, resume: bool):
        """Set up: tokenizer, model, loader, optimizer, precision; then resume or seed a fresh start."""
        self.cfg, self.ranks, self.run_dir = cfg, ranks, Layout(root).run(cfg.name)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        rank, world, device = ranks.rank, ranks.world, ranks.device
        tokenizer = build_tokenizer(cfg, root, self.run_dir) if rank == 0 else None
        ranks.barrier()  # rank 0 trains/saves the tokenizer; the others read the saved one
        tokenizer = tokenizer or build_tokenizer(cfg, root, self.run_dir)
        self.model = model = build_model(cfg, tokenizer, root).to(device)
        self.loader = make_run_loader(cfg, tokenizer, model, root, rank, world)
        render = mix_render(self.loader)
        if render and render["resolution"] != model.image_size:
            raise ImpDataError(f"{mix_dir(cfg, root)}: images are {render['resolution']} px but the vision tower "
                               f"takes {model.image_size} px — render the mix at {model.image_size} or change "
                               "model.vision")
        if len(self.loader) == 0:
            raise ImpDataError(f"{mix_dir(cfg, root)}: fewer samples than one batch per rank — "
                               f"lower train.batch_size ({cfg.train.batch_size})")
        self.total = cfg.train.max_steps or max(1, len(self.loader) // cfg.train.grad_accum) * cfg.train.epochs
        self.optimizer, self.scheduler = build_optimizer(cfg, model, self.total)
        self.amp = Precision(cfg.train.precision, device)
        ddp_kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
        self.ddp_model = nn.parallel.DistributedDataParallel(model, **ddp_kwargs) if world > 1 else model
        ckpt = self._resume() if resume else self._seed()
        self.meta = {"config": cfg.to_dict(), "stage": cfg.stage, "mix": cfg.mix, "world_size": world,
                     "tokenizer": str(self.run_dir / "tokenizer"), "image": render,
                     "num_patches": model.num_patches}
        self.log = StepLog(self.run_dir / "log.jsonl" if rank == 0 else None, step=self.step, total=self.total,
                           resumed=ckpt is not None, world=world, counts=flop_counts(model), peak=peak_flops(device),
                           packing=cfg.train.packing)
        if rank == 0:
            n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
            n_all = sum(p.numel() for p in model.parameters())
            print(f"[train] {cfg.name}: stage {cfg.stage} on {cfg.mix}, {len(self.loader)} batches/epoch/rank x "
                  f"{world} rank(s), {self.total} steps from step {self.step}; {n_train:,} of {n_all:,} "
                  f"parameters trainable; {device}")
        model.train()
        self.loss_sum = torch.zeros((), device=device)

    def _seed(self) -> None:
        """A fresh start: step 0, and each rank its own dropout stream."""
        self.step = 0
        seed = self.cfg.train.seed + self.ranks.rank
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _resume(self) -> Path:
        """Continue from the latest checkpoint: weights, optimizer, schedule, loader, precision, this rank's RNG."""
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            raise ImpDataError(f"{self.run_dir}: nothing to resume (no checkpoint) — run without --resume")
        state = load_resume_state(ckpt)
        if len(state["rng"]) != self.ranks.world:
            raise ImpDataError(f"{ckpt}: written by {len(state['rng'])} ranks — resume with the same world size")
        load_trainable(self.model, ckpt)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loader.load_state_dict(state["loader"])
        self.amp.load_state_dict(state.get("scaler"))
        set_rng_state(state["rng"][self.ranks.rank])
        self.step = state["step"]
        return ckpt

    def batches(self) -> Iterator[dict]:
        """This rank's batches from where the loader stands, epoch after epoch."""
        while True:
            yield from self.loader
            self.loader.set_epoch(self.loader.epoch + 1)

    def micro_step(self, batch: dict, *, sync: bool) -> None:
        """Forward and backward of one micro-batch; its gradients add to the step's. DDP all-reduces them only
        on the micro-batch that ends a step (`sync`)."""
        train = self.cfg.train
        with self.ddp_model.no_sync() if self.ranks.world > 1 and not sync else nullcontext():
            loss = forward_loss(self.ddp_model, batch, self.ranks.device, packed=train.packing, precision=self.amp)
            self.amp.backward(loss / train.grad_accum)
        self.loss_sum += loss.detach().float()  # no .item() here: it would sync the GPU every micro-batch
        self.log.count(batch)

    def update(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip, step the optimizer and the schedule: step done. Returns (its micro-batch losses summed,
        the gradient norm)."""
        grad_norm = self.amp.step(self.optimizer, [p for p in self.model.parameters() if p.requires_grad],
                                  self.cfg.train.max_grad_norm)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        loss, self.loss_sum = self.loss_sum, torch.zeros((), device=self.ranks.device)
        # Crash-test hook: slow steps down so a test can SIGKILL the run between checkpoints.
        time.sleep(float(os.environ.get("IMP_DATA_THROTTLE_STEPS", "0")))
        return loss, grad_norm

    def log_step(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """One log line: the loss averaged over micro-batches and ranks (every rank takes part)."""
        mean_loss = self.ranks.mean(loss.item() / self.cfg.train.grad_accum)
        self.log.write(self.step, epoch=self.loader.epoch, loss=mean_loss, lr=self.scheduler.get_last_lr()[-1],
                       grad_norm=grad_norm, skipped=self.loader.skipped)

    def save(self) -> None:
        """Checkpoint this step: every rank hands in its RNG states, rank 0 writes."""
        rngs = self.ranks.gather(rng_state())
        if self.ranks.rank == 0:
            save_checkpoint(self.run_dir, self.step, model=self.model, optimizer=self.optimizer,
                            scheduler=self.scheduler, loader_state=self.loader.state_dict(), rng_states=rngs,
                            meta=self.meta, scaler=self.amp.state_dict())
        self.ranks.barrier()

    def close(self) -> None:
        self.log.close()
        if self.ranks.rank == 0:
            print(f"[train] {self.cfg.name}: stopped at step {self.step}/{self.total} -> {self.run_dir}")


# ---------------------------------------------------------------------------------------------------------
# the loop

def train(run: str | Path, *, resume: bool = False, overrides=(), data_root: str | Path | None = None) -> Path:
    """Train a run recipe (`manifests/runs/*.yaml`) on its mix; returns the run directory DATA/runs/NAME.

    Args:
        run: the run recipe.
        resume: continue from the run's latest checkpoint (same batches, same losses as if never stopped).
        overrides: `a.b=value` settings applied to the recipe (`--set`).
        data_root: where `mixes/` are and `runs/` go (default: the recipe's `data_root`).
    """
    cfg = load_run(run, list(overrides))
    ranks = Ranks.start(cfg)
    t = Trainer(cfg, Path(data_root or cfg.data_root).resolve(), ranks, resume=resume)
    batches, accum = t.batches(), cfg.train.grad_accum
    stop = t.step >= t.total  # resuming a finished run: nothing left to do
    while not stop:
        for micro in range(accum):
            t.micro_step(next(batches), sync=micro == accum - 1)
        loss, grad_norm = t.update()
        if t.step % cfg.train.log_every == 0 or t.step == t.total:
            t.log_step(loss, grad_norm)
        stop = t.step >= t.total or (cfg.train.stop_after is not None and t.step >= cfg.train.stop_after)
        if stop or (cfg.train.save_every and t.step % cfg.train.save_every == 0):
            t.save()
    batches.close()  # ends the loader's worker processes
    t.close()
    ranks.close()
    return t.run_dir
