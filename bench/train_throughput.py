"""Stage-2 training throughput at Imp-3B shapes, fed by the real shard loader: samples/s, tokens/s, MFU
and loader headroom.

The model is what `imp-data train manifests/runs/imp3b_stage2.yaml` builds (SigLIP-so400m/384 tower,
27 layers of width 1152, 729 patches; Phi-2, 32 layers of width 2560, 32 heads, MLP 10240, vocab 51200;
LoRA r=256 alpha=256 on every LLM linear incl. lm_head; mlp2x_gelu projector; bf16 autocast on CUDA),
but random-initialised from transformers configs, so the bench needs no download; `--weights DIR`
(holding `siglip-so400m-patch14-384/` and `phi-2/`) loads the real weights and the Phi-2 tokenizer.
Without them a tiny BPE tokenizer is trained on the mix's texts, so the token counts (and tokens/s)
are the tiny tokenizer's, not Phi-2's. Each step is the train loop's: forward_loss -> backward per
micro-batch, clip, AdamW, schedule; the batches come from `make_run_loader` over a built mix (`--mix`,
or the demo's stage-2 mix rendered at the tower's resolution into a temp dir).

Figures (warm-up steps are run and timed apart; the rest is the measured window):
- samples/s and tokens/s (LLM positions: text + 729 per image) of the step loop, loader included;
- MFU = the project's `step_flops` (recompute not counted) / time / the GPU's dense bf16 peak (CUDA only);
- loader headroom = the loader alone (same workers, no model) in samples/s per worker / the step loop's
  samples/s; above 1 one worker keeps up with a GPU, and ceil(1 / headroom) workers are needed.

    python bench/train_throughput.py --json tiny_cpu.json      # CPU: the tiny shape, seconds
    python bench/train_throughput.py --shape imp3b --steps 20 --json imp3b_h100.json   # one GPU
    python bench/train_throughput.py --shape imp3b --set model.frozen_dtype=bfloat16   # frozen weights in bf16

The imp3b defaults are the recipe's: per-device batch 4 x 4 accumulation, gradient checkpointing, 4 loader
workers, fp32 frozen weights under bf16 autocast. No GPU was available where this was written, so the
README has no GPU figures yet: the second command, run on an H100, produces them. On a CPU the imp3b
shape fits in ~20 GiB (`--steps 1 --warmup 0 --batch-size 1 --grad-accum 1`: ~140 s a step on 2 cores),
which shows that it builds and trains; `--layers N` cuts both towers where memory is shorter.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402

from imp_data.core.errors import ImpDataError  # noqa: E402
from imp_data.train.config import RunConfig, apply_overrides, run_from_dict  # noqa: E402
from imp_data.train.flops import flop_counts, llm_tokens, peak_flops, step_flops  # noqa: E402
from imp_data.train.loop import (  # noqa: E402
    build_model,
    build_optimizer,
    build_tokenizer,
    forward_loss,
    make_run_loader,
    mix_render,
)

RUNS = ROOT / "manifests" / "runs"
DEMO_RECIPE = ROOT / "manifests" / "demo.yaml"
# google/siglip-so400m-patch14-384 config.json (its vision part); build_model deletes the last layer
SIGLIP_SO400M = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
                 "image_size": 384, "patch_size": 14}
# microsoft/phi-2 config.json
PHI2 = {"vocab_size": 51200, "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 2048,
        "partial_rotary_factor": 0.4, "rope_theta": 10000.0, "hidden_act": "gelu_new", "layer_norm_eps": 1e-5,
        "resid_pdrop": 0.1, "embd_pdrop": 0.0, "attention_dropout": 0.0, "tie_word_embeddings": False}
SHAPES = {"imp3b": RUNS / "imp3b_stage2.yaml", "tiny": RUNS / "tiny_stage2.yaml"}


# ---------------------------------------------------------------------------------------------------------
# config: the shape's run recipe, with random-init configs (or --weights) and the bench's flags applied

def bench_config(args) -> RunConfig:
    """The stage-2 recipe of the shape, made self-contained (no stage-1 projector, the bench's mix), with
    the flags, then `--set`, applied; set on the parsed YAML so that the configs need no YAML quoting."""
    raw = yaml.safe_load(SHAPES[args.shape].read_text())
    raw.update(mix="bench")
    model, train = raw.setdefault("model", {}), raw.setdefault("train", {})
    model["init_projector"] = None
    train["max_steps"] = 1000  # the schedule's length only: the bench stays near the top of the cosine
    if args.shape == "imp3b" and args.weights:  # the recipe's /models/<name> under DIR
        model.update(vision=str(args.weights / Path(model["vision"]).name),
                     llm=str(args.weights / Path(model["llm"]).name),
                     tokenizer=str(args.weights / Path(model["tokenizer"]).name))
    elif args.shape == "imp3b":
        model.update(vision=dict(SIGLIP_SO400M), llm=dict(PHI2), tokenizer=None, tokenizer_vocab_size=4096)
    if args.layers:  # both towers cut, when the full model does not fit
        if not (isinstance(model["vision"], dict) and isinstance(model["llm"], dict)):
            raise SystemExit("--layers applies to random-init towers, not to --weights")
        for part in ("vision", "llm"):
            model[part]["num_hidden_layers"] = args.layers
    for value, key in ((args.batch_size, "batch_size"), (args.grad_accum, "grad_accum"),
                       (args.workers, "num_workers"), (args.grad_checkpointing, "gradient_checkpointing")):
        if value is not None:
            train[key] = value
    return run_from_dict(apply_overrides(raw, list(args.set)), str(SHAPES[args.shape]))


# ---------------------------------------------------------------------------------------------------------
# data: a temp data root whose mixes/bench is --mix (a symlink) or the demo's stage-2 mix built there

def demo_mix(work: Path, resolution: int) -> Path:
    """The demo recipe's stage-2 mix over the fixture mirror, rendered at `resolution` (seconds on a CPU)."""
    from imp_data.build import build
    from imp_data.core.context import BuildContext
    from imp_data.core.recipe import load_recipe
    from imp_data.fixtures import write_mirror

    write_mirror(work / "mirror", scale=1, seed=0)
    recipe = load_recipe(DEMO_RECIPE)
    recipe = recipe.model_copy(update={"render": recipe.render.model_copy(update={"resolution": resolution}),
                                       "mixes": {"demo_stage2": recipe.mixes["demo_stage2"]}})
    build(BuildContext(recipe=recipe, data_root=work, progress=False))
    return work / "mixes" / "demo_stage2"


def bench_root(work: Path, mix: Path | None, resolution: int) -> Path:
    """A data root whose mix `bench` is the one to stream (make_run_loader finds mixes by name)."""
    source = mix.resolve() if mix else demo_mix(work / "demo", resolution)
    root = work / "root"
    (root / "mixes").mkdir(parents=True)
    (root / "mixes" / "bench").symlink_to(source, target_is_directory=True)
    if not (source / "index.parquet").is_file():
        raise ImpDataError(f"{source}: not a built mix (no index.parquet) — build one (imp-data build RECIPE) "
                           f"or leave out --mix")
    render = mix_render(source)
    if render and render["resolution"] != resolution:
        raise ImpDataError(f"{source}: images are {render['resolution']} px but the vision tower takes "
                           f"{resolution} px — pass a mix rendered at {resolution} px, or leave out --mix")
    return root


def tower_resolution(vision) -> int:
    """The image side the vision tower takes, read from its config (the mix must be rendered at it)."""
    from transformers import SiglipVisionConfig

    if isinstance(vision, dict):
        return SiglipVisionConfig(**vision).image_size
    return SiglipVisionConfig.from_pretrained(vision, local_files_only=True).image_size


def endless(loader) -> Iterator[dict]:
    """Batches across epochs, as the train loop sees them."""
    epoch = 0
    while True:
        yield from loader
        epoch += 1
        loader.set_epoch(epoch)


# ---------------------------------------------------------------------------------------------------------
# measurements

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_steps(n: int, batches: Iterator[dict], model, optimizer, scheduler, cfg: RunConfig, counts: dict,
              device: torch.device) -> dict:
    """`n` optimizer steps of the train loop; wall time (GPU synced), samples, LLM tokens, FLOPs, last loss."""
    out = {"samples": 0, "tokens": 0, "flops": 0.0, "loss": float("nan")}
    sync(device)
    t = time.perf_counter()
    for _ in range(n):
        for _ in range(cfg.train.grad_accum):
            batch = next(batches)
            loss = forward_loss(model, batch, device)
            (loss / cfg.train.grad_accum).backward()
            tokens, rows = llm_tokens(batch, model.num_patches), len(batch["input_ids"])
            images = 0 if batch["pixel_values"] is None else len(batch["pixel_values"])
            out["samples"] += rows
            out["tokens"] += tokens
            out["flops"] += step_flops(counts, tokens, images, tokens / rows)
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.train.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    if n:
        out["loss"] = loss.item()  # also syncs
    sync(device)
    out["seconds"] = time.perf_counter() - t
    return out


def loader_rate(cfg: RunConfig, tokenizer, model, root: Path, warmup: int, n: int) -> float:
    """Samples/s of the loader alone (same workers, tokenising and collating, no model) per worker;
    the first `warmup` batches (worker start-up, cold page cache) are not timed."""
    batches = endless(make_run_loader(cfg, tokenizer, model, root))
    for _ in range(warmup):
        next(batches)
    t, samples = time.perf_counter(), 0
    for _ in range(n):
        samples += len(next(batches)["input_ids"])
    return samples / (time.perf_counter() - t) / max(1, cfg.train.num_workers)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux: the process's peak RSS


# ---------------------------------------------------------------------------------------------------------
# main

def parse_args(argv=None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="imp3b" if cuda else "tiny")
    ap.add_argument("--mix", type=Path, help="a built mix dir (index.parquet, shards/); "
                                             "default: the demo's stage-2 mix built into a temp dir")
    ap.add_argument("--weights", type=Path, help="imp3b: DIR with siglip-so400m-patch14-384/ and phi-2/ (local)")
    ap.add_argument("--steps", type=int, default=20 if cuda else 5, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=3 if cuda else 1, help="untimed steps before them")
    ap.add_argument("--batch-size", type=int, help="per-device batch (default: the recipe's)")
    ap.add_argument("--grad-accum", type=int, help="micro-batches per step (default: the recipe's)")
    ap.add_argument("--workers", type=int, help="loader workers (default: the recipe's)")
    ap.add_argument("--grad-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                    help="default: the recipe's (imp3b on, tiny off)")
    ap.add_argument("--layers", type=int, help="cap both towers' layers (random init; when memory is short)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override, repeatable")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")
    if args.weights and args.shape != "imp3b":
        ap.error("--weights needs --shape imp3b")
    return args


def main(argv=None) -> dict:
    """Run the bench; returns (and prints, and with --json writes) the figures."""
    args = parse_args(argv)
    cfg = bench_config(args)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    elif cfg.train.cpu_threads:
        torch.set_num_threads(cfg.train.cpu_threads)
    torch.manual_seed(cfg.train.seed)

    with tempfile.TemporaryDirectory(prefix="imp-bench-train-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        root = bench_root(work, args.mix, tower_resolution(cfg.model.vision))
        tokenizer = build_tokenizer(cfg, root, work / "run")
        model = build_model(cfg, tokenizer, root).to(device)
        model.train()
        counts = flop_counts(model)
        optimizer, scheduler = build_optimizer(cfg, model, cfg.train.max_steps)
        batches = endless(make_run_loader(cfg, tokenizer, model, root))
        setup_s = time.perf_counter() - t
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in model.parameters())
        print(f"[bench] {args.shape} on {device}: {n_train:,} of {n_all:,} parameters trainable, "
              f"{counts['num_patches']} patches, batch {cfg.train.batch_size} x {cfg.train.grad_accum} accum, "
              f"{cfg.train.num_workers} worker(s), grad ckpt {'on' if cfg.train.gradient_checkpointing else 'off'}, "
              f"mix {args.mix or 'demo_stage2 (built here)'} (setup {setup_s:.1f} s)")

        warm = run_steps(args.warmup, batches, model, optimizer, scheduler, cfg, counts, device)
        timed = run_steps(args.steps, batches, model, optimizer, scheduler, cfg, counts, device)
        per_worker = loader_rate(cfg, tokenizer, model, root, warmup=max(1, cfg.train.num_workers),
                                 n=max(4, args.steps * cfg.train.grad_accum))

    dt = timed["seconds"]
    peak = peak_flops(device)
    samples_s = timed["samples"] / dt
    result = {
        "shape": args.shape, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch_size": cfg.train.batch_size, "grad_accum": cfg.train.grad_accum, "workers": cfg.train.num_workers,
        "gradient_checkpointing": cfg.train.gradient_checkpointing, "frozen_dtype": cfg.model.frozen_dtype,
        "params_trainable": n_train, "params_total": n_all, "steps": args.steps, "warmup_steps": args.warmup,
        "warmup_s": round(warm["seconds"], 3), "timed_s": round(dt, 3), "samples": timed["samples"],
        "samples_per_s": samples_s, "tokens_per_s": timed["tokens"] / dt,
        "tokens_per_sample": timed["tokens"] / timed["samples"], "step_s": dt / args.steps,
        "mfu": timed["flops"] / dt / peak if peak else None, "tflops_per_s": timed["flops"] / dt / 1e12,
        "loader_samples_per_s_per_worker": per_worker, "loader_headroom": per_worker / samples_s,
        "workers_needed": math.ceil(samples_s / per_worker), "loss": timed["loss"],
        "peak_memory_gib": round(peak_memory_gib(device), 2),
    }
    mfu = f"MFU {result['mfu']:.1%}" if peak else f"MFU n/a ({result['tflops_per_s']:.3f} TFLOP/s, no GPU peak)"
    print(f"[bench] {args.shape} {result['device']}: {samples_s:.2f} samples/s | {result['tokens_per_s']:,.0f} tok/s "
          f"({result['tokens_per_sample']:.0f}/sample) | {result['step_s']:.3f} s/step | {mfu} | loader "
          f"{per_worker:.1f} samples/s/worker -> headroom {result['loader_headroom']:.1f}x "
          f"({result['workers_needed']} worker(s) needed) | warm-up {args.warmup} step(s) {warm['seconds']:.2f} s | "
          f"peak mem {result['peak_memory_gib']:.2f} GiB | loss {result['loss']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
