"""`imp-data train RUN`: one training loop for both stages, read top to bottom.

Stage 1 trains the projector only (plain template); stage 2 adds LoRA on every linear layer of the LLM,
lm_head included, and keeps training the projector (phi2 template) — docs/training.md §4. The rest is the HF
Trainer setup Imp ran under: AdamW with the projector in its own parameter groups (LLaVATrainer),
linear warmup over 3% of the steps then cosine to zero, gradient accumulation, clipping, bf16 autocast on
CUDA (fp32 on CPU), DDP under torchrun (nccl on GPU, gloo on CPU). Every checkpoint resumes exactly:
weights, optimizer, scheduler, loader position and each rank's RNG states, so a killed run continues with
the same batches and the same losses.

The one design choice: everything a run needs is built by the small `build_*` functions above the loop
(tokenizer, model, loader, optimizer), which the tests, the eval job and the throughput bench reuse.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imp_data.core.errors import ImpDataError
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
from imp_data.train.model import ImpModel, ModelSpec
from imp_data.train.packing import position_counts
from imp_data.train.precision import Precision, set_tf32
from imp_data.train.tokenizer import load_tokenizer, train_tiny_tokenizer

# dense bf16 peak per GPU, for MFU (spec sheets, no sparsity)
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


# ---------------------------------------------------------------------------------------------------------
# building blocks (also used by the tests, the eval job and bench/train_throughput.py)

def mix_dir(cfg: RunConfig, data_root: Path) -> Path:
    path = Path(data_root) / "mixes" / cfg.mix
    if not (path / "index.parquet").is_file():
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
    """The run's tokenizer; a tiny BPE is trained once on the mix's texts and kept in RUN/tokenizer."""
    saved = Path(run_dir) / "tokenizer"
    if saved.is_dir():
        return load_tokenizer(saved)
    if cfg.model.tokenizer:
        tokenizer = load_tokenizer(cfg.model.tokenizer)
    else:
        import polars as pl  # here: the GPU check imports this module where polars is not installed

        plan = pl.read_parquet(mix_dir(cfg, data_root) / "plan.parquet", columns=["conversations"])
        texts = [t["value"] for conv in plan["conversations"].to_list() for t in conv]
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
            load_projector(model, source if source.is_absolute() else Path(data_root) / "runs" / source)
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


def llm_tokens(batch: dict, num_patches: int) -> int:
    """Sequence positions the LLM processes: text tokens plus `num_patches` per image."""
    n_images = 0 if batch.get("pixel_values") is None else len(batch["pixel_values"])
    return int(batch["attention_mask"].sum()) + n_images * (num_patches - 1)


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


def clock(seconds: float) -> str:
    """Seconds as h:mm:ss, for the ETA.

    Example:
        >>> clock(3725)
        '1:02:05'
    """
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{sec:02d}"


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])) if k in name), None)


def _all_ranks(obj, world: int) -> list:
    if world == 1:
        return [obj]
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def _mean(value: float, world: int, device: torch.device) -> float:
    if world == 1:
        return value
    t = torch.tensor([value], device=device, dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return t.item() / world


# ---------------------------------------------------------------------------------------------------------
# the loop

def truncate_log(path: Path, step: int) -> None:
    """Keep the log lines up to `step`: a run killed after its last checkpoint logged steps that the resumed
    run does again, and they must not appear twice."""
    from imp_data.core.io import write_text_atomic

    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] > step:
                break
        except (ValueError, KeyError, TypeError):  # a line cut short by the kill
            break
        kept.append(line)
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(kept))


def train(run: str | Path, *, resume: bool = False, overrides=(), data_root: str | Path | None = None) -> Path:
    """Train a run recipe (`manifests/runs/*.yaml`) on its mix; returns the run directory DATA/runs/NAME.

    Args:
        run: the run recipe.
        resume: continue from the run's latest checkpoint (same batches, same losses as if never stopped).
        overrides: `a.b=value` settings applied to the recipe (`--set`).
        data_root: where `mixes/` are and `runs/` go (default: the recipe's `data_root`).
    """
    # ---- config and processes
    cfg = load_run(run, list(overrides))
    root = Path(data_root or cfg.data_root).resolve()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        set_tf32(cfg.train.tf32)
    threads = torch.get_num_threads()
    if device.type == "cpu" and cfg.train.cpu_threads:
        torch.set_num_threads(cfg.train.cpu_threads)
    # a caller that set up the process group (e.g. several runs in one process) keeps it; else it is ours
    owns_group = world > 1 and not torch.distributed.is_initialized()
    if owns_group:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    barrier = torch.distributed.barrier if world > 1 else (lambda: None)
    run_dir = root / "runs" / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)

    # ---- tokenizer, model, data, optimizer
    tokenizer = build_tokenizer(cfg, root, run_dir) if rank == 0 else None
    barrier()  # rank 0 trains/saves the tokenizer; the others read the saved one
    tokenizer = tokenizer or build_tokenizer(cfg, root, run_dir)
    model = build_model(cfg, tokenizer, root).to(device)
    loader = make_run_loader(cfg, tokenizer, model, root, rank, world)
    render = mix_render(loader)
    if render and render["resolution"] != model.image_size:
        raise ImpDataError(f"{mix_dir(cfg, root)}: images are {render['resolution']} px but the vision tower takes "
                           f"{model.image_size} px — render the mix at {model.image_size} or change model.vision")
    if len(loader) == 0:
        raise ImpDataError(f"{mix_dir(cfg, root)}: fewer samples than one batch per rank — "
                           f"lower train.batch_size ({cfg.train.batch_size})")
    total = cfg.train.max_steps or max(1, len(loader) // cfg.train.grad_accum) * cfg.train.epochs
    optimizer, scheduler = build_optimizer(cfg, model, total)
    amp = Precision(cfg.train.precision, device)
    ddp_kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
    train_model = nn.parallel.DistributedDataParallel(model, **ddp_kwargs) if world > 1 else model

    # ---- resume (or a fresh start)
    step, epoch = 0, 0
    ckpt = latest_checkpoint(run_dir) if resume else None
    if resume and ckpt is None:
        raise ImpDataError(f"{run_dir}: nothing to resume (no checkpoint) — run without --resume")
    if ckpt is not None:
        state = load_resume_state(ckpt)
        if len(state["rng"]) != world:
            raise ImpDataError(f"{ckpt}: written by {len(state['rng'])} ranks — resume with the same world size")
        load_trainable(model, ckpt)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        loader.load_state_dict(state["loader"])
        amp.load_state_dict(state.get("scaler"))
        set_rng_state(state["rng"][rank])
        step, epoch = state["step"], state["loader"]["epoch"]
    else:  # each rank its own dropout stream
        random.seed(cfg.train.seed + rank)
        np.random.seed(cfg.train.seed + rank)
        torch.manual_seed(cfg.train.seed + rank)
    meta = {"config": cfg.to_dict(), "stage": cfg.stage, "mix": cfg.mix, "world_size": world,
            "tokenizer": str(run_dir / "tokenizer"), "image": render,
            "num_patches": model.num_patches}
    peak, counts = peak_flops(device), flop_counts(model)
    log = None
    if rank == 0:  # a fresh start: a fresh log; a resume: the log as it was at the checkpoint
        if ckpt is not None:
            truncate_log(run_dir / "log.jsonl", step)
        log = open(run_dir / "log.jsonl", "a" if ckpt else "w")
    if rank == 0:
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in model.parameters())
        print(f"[train] {cfg.name}: stage {cfg.stage} on {cfg.mix}, {len(loader)} batches/epoch/rank x {world} "
              f"rank(s), {total} steps from step {step}; {n_train:,} of {n_all:,} parameters trainable; {device}")

    def save(at: int) -> None:
        rngs = _all_ranks(rng_state(), world)  # every rank takes part; rank 0 writes
        if rank == 0:
            save_checkpoint(run_dir, at, model=model, optimizer=optimizer, scheduler=scheduler,
                            loader_state=loader.state_dict(), rng_states=rngs, meta=meta, scaler=amp.state_dict())
        barrier()

    # ---- steps
    model.train()
    micro, loss_sum, saved_at = 0, torch.zeros((), device=device), step if ckpt is not None else -1
    window = {"t": time.time(), "samples": 0, "tokens": 0, "positions": 0, "flops": 0.0, "truncated": 0, "mismatch": 0}
    started, first_step = time.time(), step  # the ETA is this process's rate over the steps left
    while step < total:
        for batch in loader:
            micro += 1
            last_micro = micro % cfg.train.grad_accum == 0
            # DDP: all-reduce gradients only on the micro-batch that ends a step
            with train_model.no_sync() if world > 1 and not last_micro else nullcontext():
                loss = forward_loss(train_model, batch, device, packed=cfg.train.packing, precision=amp)
                amp.backward(loss / cfg.train.grad_accum)
            loss_sum += loss.detach().float()  # no .item() here: it would sync the GPU every micro-batch
            tokens, positions, attended = position_counts(batch, model.num_patches, cfg.train.packing)
            n_images = 0 if batch["pixel_values"] is None else len(batch["pixel_values"])
            window["samples"] += len(batch["input_ids"])
            window["tokens"] += tokens
            window["positions"] += positions  # computed by the LLM: tokens + padding
            window["flops"] += step_flops(counts, tokens, n_images, attended)
            for key in ("truncated", "mismatch"):
                window[key] += batch["stats"][key]
            if not last_micro:
                continue
            grad_norm = amp.step(optimizer, [p for p in model.parameters() if p.requires_grad],
                                 cfg.train.max_grad_norm)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            # Crash-test hook: slow steps down so a test can SIGKILL the run between checkpoints.
            time.sleep(float(os.environ.get("IMP_DATA_THROTTLE_STEPS", "0")))

            # ---- log
            if step % cfg.train.log_every == 0 or step == total:
                mean_loss = _mean(loss_sum.item() / cfg.train.grad_accum, world, device)
                if rank == 0:
                    dt = max(time.time() - window["t"], 1e-9)
                    record = {"step": step, "epoch": loader.epoch, "loss": round(mean_loss, 6),
                              "lr": scheduler.get_last_lr()[-1], "grad_norm": round(float(grad_norm), 4),
                              "samples_per_s": round(window["samples"] * world / dt, 2),
                              "tokens_per_s": round(window["tokens"] * world / dt, 1),
                              "padding_share": round(1 - window["tokens"] / max(window["positions"], 1), 4),
                              "eta_s": round((total - step) * (time.time() - started) / (step - first_step)),
                              "skipped": loader.skipped, "truncated": window["truncated"],
                              "mismatch": window["mismatch"]}
                    if peak:
                        record["mfu"] = round(window["flops"] / dt / peak, 4)
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    mfu = f" | mfu {record['mfu']:.1%}" if peak else ""
                    print(f"step {step}/{total} | loss {mean_loss:.4f} | lr {record['lr']:.2e} | "
                          f"{record['samples_per_s']:.1f} samples/s | {record['tokens_per_s']:,.0f} tok/s{mfu} | "
                          f"padding {record['padding_share']:.1%} | eta {clock(record['eta_s'])}")
                window.update(t=time.time(), samples=0, tokens=0, positions=0, flops=0.0, truncated=0, mismatch=0)
            loss_sum.zero_()

            # ---- checkpoint
            stop = step >= total or (cfg.train.stop_after is not None and step >= cfg.train.stop_after)
            if stop or (cfg.train.save_every and step % cfg.train.save_every == 0):
                save(step)
                saved_at = step
            if stop:
                break
        if step >= total or (cfg.train.stop_after is not None and step >= cfg.train.stop_after):
            break
        epoch += 1
        loader.set_epoch(epoch)

    # ---- end
    if saved_at != step:
        save(step)
    if rank == 0:
        log.close()
        print(f"[train] {cfg.name}: stopped at step {step}/{total} -> {run_dir}")
    if owns_group:
        torch.distributed.destroy_process_group()
    torch.set_num_threads(threads)
    return run_dir
