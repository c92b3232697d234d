"""The one-GPU check (run by bench/gpu_check.sh): Imp-3B stage 2 and stage 1 with random-initialised towers,
padded vs packed batches, through the project's own loader, encoder, model and step.

Why this shape: a lent GPU machine has minutes, no network and no polars/pydantic (its Python has torch,
transformers, peft, pyarrow, pillow, numpy, pyyaml), so everything is made here: a synthetic mix of the
stage's real length distribution (bench/mix_lengths.py) written as tar shards with per-member sha256, its
index built in memory (no index.parquet to read), a tiny BPE tokenizer trained on its texts, and the
models from transformers configs (SigLIP-so400m/384 + Phi-2 at bench/train_throughput.py's shapes) built
directly on the device. Nothing is downloaded.

Per stage and mode (padded = packing off, packed = on; the same batches, read first by the real loader):
samples/s, LLM tokens/s (real positions), padding share of the computed positions, MFU (useful FLOPs, as
the train loop counts them, over the GPU's dense bf16 peak), seconds per optimizer step and peak memory;
per stage the loader's samples/s with the recipe's workers and its headroom (loader rate / the faster
mode's step rate: above 1 the loader keeps up), and the packed-vs-padded loss of one batch on the same
weights, dropout off (relative difference; bf16 autocast on GPU). A phase that would overrun --budget-s is skipped
and says so; the JSON is rewritten after every phase, so a killed run still leaves what it measured.

    bash bench/gpu_check.sh                      # one H100: a few minutes (not yet run on one), JSON to
                                                 # $OUT/gpu_check.json (else /tmp)
    bash bench/gpu_check.sh --cpu --json x.json  # tiny shapes, a few steps, seconds (tests/test_bench_gpu_check.py)
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import resource
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from bench.mix_lengths import sample_records, stage1_parts, stage2_parts, text_words  # noqa: E402
from bench.train_throughput import PHI2, SIGLIP_SO400M  # noqa: E402
from imp_data.train.batching import make_collate, make_encode  # noqa: E402
from imp_data.train.config import run_from_dict  # noqa: E402
from imp_data.train.data import ShardLoader  # noqa: E402
from imp_data.train.flops import flop_counts, peak_flops, step_flops  # noqa: E402
from imp_data.train.loop import build_model, build_optimizer, forward_loss  # noqa: E402
from imp_data.train.packing import position_counts  # noqa: E402
from imp_data.train.reader import ShardIndex  # noqa: E402
from imp_data.train.tokenizer import train_tiny_tokenizer  # noqa: E402

RUNS = ROOT / "manifests" / "runs"
RECIPES = {("full", 2): "imp3b_stage2.yaml", ("full", 1): "imp3b_stage1.yaml",
           ("cpu", 2): "tiny_stage2.yaml", ("cpu", 1): "tiny_stage1.yaml"}


def stage_config(mode: str, stage: int, workers: int | None):
    """The stage's run recipe with random-init towers, no stage-1 projector, and the packing flag free."""
    raw = yaml.safe_load((RUNS / RECIPES[mode, stage]).read_text())
    model, train = raw["model"], raw["train"]
    model.update(init_projector=None, tokenizer=None, tokenizer_vocab_size=4096 if mode == "full" else 512)
    if mode == "full":
        model.update(vision=dict(SIGLIP_SO400M), llm=dict(PHI2))
    train.update(max_steps=1000, group_by_modality_length=train.get("group_by_modality_length", False))
    if workers is not None:
        train["num_workers"] = workers
    return run_from_dict(raw, RECIPES[mode, stage])


def write_mix(work: Path, records: list[dict], resolution: int, shard_size: int = 256) -> ShardIndex:
    """Records -> tar shards (KEY.json, KEY.jpg) + their ShardIndex with sha256 per member, as a built mix
    has; 16 distinct JPEGs (smooth colour fields with noise, q95) are shared so that writing stays quick."""
    rng = np.random.default_rng(0)
    jpegs = []
    for _ in range(16):
        base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((resolution, resolution), Image.BILINEAR)
        noisy = np.clip(np.asarray(img, np.int16) + rng.integers(-12, 13, (resolution, resolution, 3)), 0, 255)
        buf = io.BytesIO()
        Image.fromarray(noisy.astype(np.uint8)).save(buf, "JPEG", quality=95)
        jpegs.append(buf.getvalue())
    shards_dir = work / "shards"
    shards_dir.mkdir(parents=True)
    names, members = [], {}
    for s in range(0, len(records), shard_size):
        name = f"{s // shard_size:06d}.tar"
        names.append(name)
        with tarfile.open(shards_dir / name, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i, rec in enumerate(records[s:s + shard_size], start=s):
                record = {"key": rec["key"], "conversations": rec["conversations"],
                          "image": {"resolution": resolution, "mode": "pad"} if rec["image"] else None}
                jpg = jpegs[i % 16] if rec["image"] else None
                for ext, data in (("json", json.dumps(record).encode()), ("jpg", jpg)):
                    if data is not None:
                        info = tarfile.TarInfo(f"{rec['key']}.{ext}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
                        members[info.name] = data
        with tarfile.open(shards_dir / name) as tar:  # the data offsets, as the shard writer indexes them
            for info in tar.getmembers():
                members[info.name] = (s // shard_size, info.offset_data, members[info.name])
    n = len(records)
    cols = {k: np.full(n, -1, np.int64) for k in ("json_offset", "json_size", "jpg_offset", "jpg_size")}
    digests = {ext: np.zeros((n, 32), np.uint8) for ext in ("json", "jpg")}
    shard = np.zeros(n, np.int32)
    for i, rec in enumerate(records):
        for ext in ("json", "jpg"):
            if f"{rec['key']}.{ext}" in members:
                shard[i], offset, data = members[f"{rec['key']}.{ext}"]
                cols[f"{ext}_offset"][i], cols[f"{ext}_size"][i] = offset, len(data)
                digests[ext][i] = np.frombuffer(hashlib.sha256(data).digest(), np.uint8)
    has = cols["jpg_offset"] >= 0
    cols["jpg_size"][~has] = 0
    side = np.where(has, resolution, -1)
    return ShardIndex(shards_dir=shards_dir, keys=np.array([r["key"] for r in records]), shard=shard, names=names,
                      width=side, height=side, text_words=np.array([text_words(r) for r in records]),
                      filesize={nm: (shards_dir / nm).stat().st_size for nm in names},
                      json_sha256=digests["json"], jpg_sha256=digests["jpg"], **cols)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def read_batches(cfg, index: ShardIndex, tokenizer, num_patches: int, n: int, pin: bool) -> tuple[list, float]:
    """`n` batches from the project's loader (verifying every member) and its samples/s (first batch untimed)."""
    loader = ShardLoader(index.shards_dir.parent, index=index, batch_size=cfg.train.batch_size, seed=0,
                         encode=make_encode(tokenizer, cfg.template, cfg.train.model_max_length, num_patches),
                         collate=make_collate(tokenizer), num_workers=cfg.train.num_workers, pin_memory=pin,
                         group_by_modality_length=cfg.train.group_by_modality_length,
                         megabatch=cfg.train.batch_size * cfg.train.grad_accum)
    batches, epoch, t, samples = [], 0, 0.0, 0
    while len(batches) < n:
        for batch in loader:
            batches.append(batch)
            if len(batches) == 1:
                t = time.perf_counter()
            else:
                samples += len(batch["input_ids"])
            if len(batches) == n:
                break
        epoch += 1
        loader.set_epoch(epoch)
    loader.close()
    return batches, samples / max(time.perf_counter() - t, 1e-9)


def run_steps(model, optimizer, cfg, batches, counts, device, packed: bool) -> dict:  # optimizer: (AdamW, schedule)
    """One optimizer step per `grad_accum` batches, as the train loop does; wall time synced."""
    out = {"samples": 0, "tokens": 0, "positions": 0, "flops": 0.0}
    accum = cfg.train.grad_accum
    sync(device)
    t = time.perf_counter()
    for i, batch in enumerate(batches):
        loss = forward_loss(model, batch, device, packed=packed)
        (loss / accum).backward()
        tokens, positions, attended = position_counts(batch, model.num_patches, packed)
        images = 0 if batch["pixel_values"] is None else len(batch["pixel_values"])
        out["samples"] += len(batch["input_ids"])
        out["tokens"] += tokens
        out["positions"] += positions
        out["flops"] += step_flops(counts, tokens, images, attended)
        if (i + 1) % accum == 0:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.train.max_grad_norm)
            optimizer[0].step()
            optimizer[1].step()
            optimizer[0].zero_grad(set_to_none=True)
    out["loss"] = loss.item()
    sync(device)
    out["seconds"] = time.perf_counter() - t
    return out


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # the process's peak RSS (KiB on Linux)


def time_mode(model, optimizer, cfg, batches, counts, device, packed: bool, warmup: int, steps: int,
              peak: float | None) -> dict:
    """Warm-up steps, then timed steps, over the same batches for either layout."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    warm_n = warmup * cfg.train.grad_accum
    warm = run_steps(model, optimizer, cfg, batches[:warm_n], counts, device, packed)
    timed = run_steps(model, optimizer, cfg, batches[warm_n:], counts, device, packed)
    dt = timed["seconds"]
    return {"samples_per_s": round(timed["samples"] / dt, 3), "tokens_per_s": round(timed["tokens"] / dt, 1),
            "padding_share": round(1 - timed["tokens"] / timed["positions"], 4),
            "mfu": round(timed["flops"] / dt / peak, 4) if peak else None,
            "tflops_per_s": round(timed["flops"] / dt / 1e12, 3), "step_s": round(dt / steps, 3),
            "peak_memory_gib": round(peak_memory_gib(device), 2), "loss": round(timed["loss"], 4),
            "warmup_s": round(warm["seconds"], 2), "seconds_total": round(warm["seconds"] + dt, 2)}


def check_stage(stage: int, args, device: torch.device, work: Path, result: dict, deadline: float) -> None:
    """Build the stage's data and model, then time padded and packed steps on the same batches."""
    cfg = stage_config(args.mode, stage, args.workers)
    parts = stage2_parts() if stage == 2 else stage1_parts()
    per_step = cfg.train.batch_size * cfg.train.grad_accum
    records = sample_records(parts, per_step * (args.warmup + args.steps) * 2, seed=stage)
    t = time.perf_counter()
    texts = [turn["value"] for rec in records for turn in rec["conversations"]]
    tokenizer = train_tiny_tokenizer(texts, cfg.model.tokenizer_vocab_size)
    with torch.device(device):  # random init where it runs: seconds on a GPU instead of minutes on the host
        model = build_model(cfg, tokenizer)
    model.train()
    resolution, counts = model.image_size, flop_counts(model)
    index = write_mix(work / f"stage{stage}", records, resolution)
    n_batches = (args.warmup + args.steps) * cfg.train.grad_accum
    batches, loader_rate = read_batches(cfg, index, tokenizer, model.num_patches, n_batches + 1,
                                        pin=device.type == "cuda")
    batches = batches[1:]
    out = result.setdefault("stages", {}).setdefault(f"stage{stage}", {})
    out.update(recipe=RECIPES[args.mode, stage], batch_size=cfg.train.batch_size, grad_accum=cfg.train.grad_accum,
               workers=cfg.train.num_workers, gradient_checkpointing=cfg.train.gradient_checkpointing,
               params_trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
               params_total=sum(p.numel() for p in model.parameters()), setup_s=round(time.perf_counter() - t, 1),
               loader_samples_per_s=round(loader_rate, 2))
    optimizer = build_optimizer(cfg, model, 1000)
    peak = peak_flops(device)
    for packed in (False, True):
        name = "packed" if packed else "padded"
        estimate = out.get("padded", {}).get("seconds_total", 0)
        if time.time() + estimate > deadline:
            out[name] = {"skipped": f"time budget ({args.budget_s} s) would be exceeded"}
            continue
        try:  # packing failing (an older transformers, say) must not lose the padded figures
            out[name] = time_mode(model, optimizer, cfg, batches, counts, device, packed, args.warmup, args.steps,
                                  peak)
        except Exception as err:
            out[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
            result.setdefault("errors", []).append(f"stage{stage} {name}: {out[name]['error']}")
            print(traceback.format_exc(), file=sys.stderr)
    if all("samples_per_s" in out.get(m, {}) for m in ("padded", "packed")):
        with torch.no_grad():  # one batch, same weights, both layouts (dropout off)
            model.eval()
            a, b = (forward_loss(model, batches[0], device, packed=p).item() for p in (False, True))
            model.train()
        out["packed_loss_rel_diff"] = abs(a - b) / max(abs(a), 1e-12)
    rates = [out[m]["samples_per_s"] for m in ("padded", "packed") if "samples_per_s" in out.get(m, {})]
    if rates:
        out["loader_headroom"] = round(loader_rate / max(rates), 2)
    if all("samples_per_s" in out.get(m, {}) for m in ("padded", "packed")):
        out["packed_speedup"] = round(out["packed"]["samples_per_s"] / out["padded"]["samples_per_s"], 3)
    del model, optimizer, batches
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def table(result: dict) -> str:
    """The figures as a fixed-width table."""
    lines = [f"{'stage':<8}{'mode':<8}{'samples/s':>10}{'tokens/s':>11}{'padding':>9}{'MFU':>7}{'s/step':>8}"
             f"{'peak GiB':>10}{'loader/s':>10}{'headroom':>10}"]
    for stage, out in result.get("stages", {}).items():
        if "error" in out or "skipped" in out:
            lines.append(f"{stage:<8}{out.get('error') or out.get('skipped')}")
        for mode in ("padded", "packed"):
            m = out.get(mode)
            if not m:
                continue
            if "skipped" in m or "error" in m:
                lines.append(f"{stage:<8}{mode:<8}{m.get('skipped') or m.get('error')}")
                continue
            mfu = f"{m['mfu']:.1%}" if m["mfu"] is not None else "n/a"
            lines.append(f"{stage:<8}{mode:<8}{m['samples_per_s']:>10.2f}{m['tokens_per_s']:>11,.0f}"
                         f"{m['padding_share']:>9.1%}{mfu:>7}{m['step_s']:>8.3f}{m['peak_memory_gib']:>10.2f}"
                         f"{out['loader_samples_per_s']:>10.1f}{out.get('loader_headroom', 0):>9.1f}x")
        if "packed_speedup" in out:
            lines.append(f"{stage:<8}packed / padded: {out['packed_speedup']:.2f}x samples/s; packed loss differs "
                         f"from padded by {out['packed_loss_rel_diff']:.1e} (relative) on one batch")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="reduced mode: tiny shapes, a few steps, on the CPU")
    ap.add_argument("--json", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--steps", type=int, help="timed optimizer steps per mode (default: 6 full, 2 cpu)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default: 2 full, 1 cpu)")
    ap.add_argument("--workers", type=int, help="loader workers (default: the recipe's)")
    ap.add_argument("--stages", default="2,1", help="which stages, in order")
    ap.add_argument("--budget-s", type=float, default=420, help="skip phases that would end later than this")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.cpu
    args.mode = "full" if cuda else "cpu"
    args.steps = args.steps or (6 if cuda else 2)
    args.warmup = args.warmup if args.warmup is not None else (2 if cuda else 1)
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_num_threads(1)  # the tiny shapes are fastest on one thread
    import transformers

    result = {"mode": args.mode, "device": torch.cuda.get_device_name(device) if cuda else "cpu",
              "torch": torch.__version__, "transformers": transformers.__version__, "steps": args.steps,
              "warmup_steps": args.warmup, "peak_bf16_flops": peak_flops(device)}
    started, failed = time.time(), False
    print(f"[gpu_check] {args.mode} on {result['device']}: torch {torch.__version__}, transformers "
          f"{transformers.__version__}; budget {args.budget_s:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="imp-gpu-check-") as tmp:
        for stage in (int(s) for s in args.stages.split(",")):
            if args.mode == "full" and time.time() > started + args.budget_s - 90:  # a build alone takes ~1 min
                result.setdefault("stages", {})[f"stage{stage}"] = {"skipped": "time budget reached before it"}
                continue
            try:
                check_stage(stage, args, device, Path(tmp), result, started + args.budget_s)
            except Exception as err:  # one stage failing must not lose the other's figures
                failed = True
                result.setdefault("stages", {})[f"stage{stage}"] = {
                    "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
                print(traceback.format_exc(), file=sys.stderr)
            result["elapsed_s"] = round(time.time() - started, 1)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
            print(f"[gpu_check] stage {stage} done at {result['elapsed_s']} s", flush=True)
    print(table(result))
    print(f"[gpu_check] wrote {args.json}")
    return 1 if failed or result.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
