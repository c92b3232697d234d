"""`imp-data train RUN`: one training loop for both stages, top to bottom.

Stage 1 trains the projector only (plain template); stage 2 adds LoRA on every linear layer of the LLM,
lm_head included, and keeps training the projector (phi2 template) — TRAINING §4. AdamW with its own
projector learning rate, linear warmup over 3% of the steps then cosine to zero, gradient
accumulation and clipping, bf16 autocast on CUDA (fp32 on CPU), DDP under torchrun. Every checkpoint
can resume exactly: weights, optimizer, scheduler, loader position and RNG states.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import polars as pl
import torch

from imp_data.errors import ImpDataError
from imp_data.train.batching import make_collate, make_encode
from imp_data.train.checkpoint import (latest_checkpoint, load_projector, load_trainable, save_checkpoint,
                                       set_rng_state)
from imp_data.train.config import RunConfig, load_run
from imp_data.train.data import make_loader
from imp_data.train.model import ImpModel, ModelSpec
from imp_data.train.tokenizer import load_tokenizer, train_tiny_tokenizer


# ---------------------------------------------------------------------------------------------------------
# building blocks (also used by tests, the eval job and the throughput bench)

def mix_dir(cfg: RunConfig, data_root: Path) -> Path:
    path = data_root / "mixes" / cfg.mix
    if not (path / "index.parquet").is_file():
        raise ImpDataError(f"{path}: no shards for mix {cfg.mix!r} — build it first (imp-data build RECIPE)")
    return path


def build_tokenizer(cfg: RunConfig, data_root: Path, run_dir: Path):
    saved = run_dir / "tokenizer"
    if saved.is_dir():
        return load_tokenizer(saved)
    if cfg.model.tokenizer:
        tokenizer = load_tokenizer(cfg.model.tokenizer)
    else:  # tiny BPE from the mix's own texts (plus the template strings)
        plan = pl.read_parquet(mix_dir(cfg, data_root) / "plan.parquet", columns=["conversations"])
        texts = [t["value"] for conv in plan["conversations"].to_list() for t in conv]
        tokenizer = train_tiny_tokenizer(texts, cfg.model.tokenizer_vocab_size)
    tokenizer.save_pretrained(saved)
    return tokenizer


def build_model(cfg: RunConfig, tokenizer, data_root: Path) -> ImpModel:
    """The model for a run; random-init parts are seeded from the run's seed, so the frozen weights a
    checkpoint does not store are rebuilt identically (tiny configs; real weights load from disk)."""
    with torch.random.fork_rng():
        torch.manual_seed(cfg.train.seed)
        model = ImpModel(ModelSpec(vision=cfg.model.vision, llm=cfg.model.llm, vocab_size=len(tokenizer)))
    model.requires_grad_(False)
    if cfg.stage == 2:
        if cfg.model.init_projector:
            source = Path(cfg.model.init_projector)
            run = source if source.is_absolute() else data_root / "runs" / cfg.model.init_projector
            ckpt = latest_checkpoint(run) or (run if (run / "mm_projector.pt").is_file() else None)
            if ckpt is None:
                raise ImpDataError(f"{run}: no stage-1 checkpoint to start the projector from — train stage 1 first")
            load_projector(model, ckpt)
        from imp_data.train.lora import add_lora

        add_lora(model, cfg.lora)
    model.mm_projector.requires_grad_(True)
    if cfg.train.gradient_checkpointing:
        model.llm.gradient_checkpointing_enable()
    return model


def build_optimizer(cfg: RunConfig, model: ImpModel, total_steps: int):
    projector = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("mm_projector.")]
    others = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("mm_projector.")]
    groups = [{"params": projector, "lr": cfg.train.projector_lr or cfg.train.lr}]
    if others:
        groups.append({"params": others, "lr": cfg.train.lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.train.weight_decay, betas=(0.9, 0.999), eps=1e-8)
    warmup = math.ceil(cfg.train.warmup_ratio * total_steps)

    def schedule(step: int) -> float:  # HF cosine-with-warmup
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def make_run_loader(cfg: RunConfig, tokenizer, model: ImpModel, data_root: Path, rank: int = 0, world: int = 1):
    encode = make_encode(tokenizer, cfg.template, cfg.train.model_max_length, model.num_patches, cfg.train.overlength)
    return make_loader(mix_dir(cfg, data_root), encode=encode, collate=make_collate(tokenizer),
                       batch_size=cfg.train.batch_size, seed=cfg.train.seed, rank=rank, world_size=world,
                       num_workers=cfg.train.num_workers, group_by_modality_length=cfg.train.group_by_modality_length,
                       megabatch=cfg.train.batch_size * world * cfg.train.grad_accum), encode


def forward_loss(model, batch: dict, device: torch.device) -> torch.Tensor:
    batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                     pixel_values=batch.get("pixel_values")).loss


# ---------------------------------------------------------------------------------------------------------
# the loop

def train(run: str | Path, *, resume: bool = False, overrides=(), data_root: str | None = None) -> Path:
    cfg = load_run(run, list(overrides))
    root = Path(data_root or cfg.data_root).resolve()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.manual_seed(cfg.train.seed)
    run_dir = root / "runs" / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)

    # ---- model, data, optimizer
    tokenizer = build_tokenizer(cfg, root, run_dir)
    model = build_model(cfg, tokenizer, root).to(device)
    loader, encode = make_run_loader(cfg, tokenizer, model, root, rank, world)
    steps_per_epoch = max(1, len(loader) // cfg.train.grad_accum)
    total = cfg.train.max_steps or steps_per_epoch * cfg.train.epochs
    optimizer, scheduler = build_optimizer(cfg, model, total)
    train_model = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    step, epoch = 0, 0
    ckpt = latest_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
        load_trainable(model, ckpt)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        step, epoch = state["step"], state["loader"]["epoch"]
    elif resume:
        raise ImpDataError(f"{run_dir}: nothing to resume (no checkpoint) — run without --resume")
    meta = {"config": cfg.to_dict(), "stage": cfg.stage, "mix": cfg.mix, "world_size": world}
    n_params = sum(p.numel() for p in model.parameters())
    log_path = run_dir / "log.jsonl"
    log = open(log_path, "a") if rank == 0 else None
    if rank == 0:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"[train] {cfg.name}: stage {cfg.stage}, {len(loader)} batches/epoch on rank 0, {total} steps, "
              f"{trainable:,} of {n_params:,} parameters trainable, device {device}")

    # ---- steps
    model.train()
    t0, samples, tokens, micro = time.time(), 0, 0, 0
    done = step >= total
    while not done:
        for batch in loader:
            loss = forward_loss(train_model, batch, device) / cfg.train.grad_accum
            loss.backward()
            micro += 1
            samples += batch["input_ids"].shape[0]
            tokens += int(batch["attention_mask"].sum())
            if micro % cfg.train.grad_accum:
                continue
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.train.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if rank == 0 and step % cfg.train.log_every == 0:
                dt = max(time.time() - t0, 1e-9)
                record = {"step": step, "epoch": loader.epoch, "loss": round(loss.item() * cfg.train.grad_accum, 6),
                          "lr": scheduler.get_last_lr()[-1], "samples_per_s": round(samples * world / dt, 2),
                          "tokens_per_s": round(tokens * world / dt, 1), "dropped": encode.dropped, "truncated": encode.truncated}
                if device.type == "cuda":  # 6·N·tokens/s over the H100's dense bf16 peak
                    record["mfu"] = round(6 * n_params * tokens * world / dt / 989e12, 4)
                log.write(json.dumps(record) + "\n")
                log.flush()
            if cfg.train.save_every and step % cfg.train.save_every == 0 and rank == 0:
                save_checkpoint(run_dir, step, model=model, optimizer=optimizer, scheduler=scheduler,
                                loader_state=loader.state_dict(), meta=meta)
            if step >= total or (cfg.train.stop_after and step >= cfg.train.stop_after):
                done = True
                break
        if not done:
            epoch += 1
            loader.set_epoch(epoch)
            if epoch >= cfg.train.epochs and not cfg.train.max_steps:
                done = True

    # ---- final checkpoint
    if rank == 0:
        save_checkpoint(run_dir, step, model=model, optimizer=optimizer, scheduler=scheduler,
                        loader_state=loader.state_dict(), meta=meta)
        log.close()
        print(f"[train] {cfg.name}: {step} steps, last loss {loss.item() * cfg.train.grad_accum:.4f} -> {run_dir}")
    if world > 1:
        torch.distributed.destroy_process_group()
    return run_dir
