"""Our shard loader vs a LLaVA-style loader on the same samples: samples/s per worker, side by side.

Baseline (LLaVA-1.5 `LazySupervisedDataset.__getitem__`): a JSON list + a folder of the ORIGINAL
images; per sample, PIL open, `expand2square` with the SigLIP mean colour, resize to 384 (bicubic),
x/255, (x - 0.5) / 0.5, in a torch DataLoader. Two flavours: the resize and normalisation done with
PIL + numpy (the lean one, the bar we claim against) and with transformers' `SiglipImageProcessor`
(what LLaVA and Imp actually call). Ours: `make_loader` over shards holding the same images already
rendered at 384 (offset reads, JPEG decode), handing uint8 images through the workers; the consumer
normalises each batch (`normalize_pixels`, on the CPU here; the model does it on the GPU in training), and
that is timed too. Neither side tokenises, so the figure is the image path alone; the target is >= 3x the
lean baseline per worker.

Ours runs twice, verified (the default: every member's sha256 checked against index.parquet) and unverified
(`verify=False`, i.e. `--trust-shards`), side by side in the same process. Their ratio is then measured on
its own (budget >= 0.90): --pairs rounds of one verified and one unverified epoch in this process, the order
alternating (ABBA, so drift cancels), the median of the per-round ratios; plus the hashing alone, timed over
the same members, as a noise-free bound.

    python bench/loader.py [--n 1000] [--workers 0,1] [--batch-size 16] [--pairs 11] [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from imp_data.train.data import make_loader  # noqa: E402
from imp_data.train.pixels import normalize_pixels  # noqa: E402
from tests.shard_factory import make_samples, photo_like, write_mix  # noqa: E402

RES, FILL = 384, (127, 127, 127)  # SigLIP: mean 0.5 -> int(0.5 * 255)


# ---- data: the same samples in both forms


def _image(i: int) -> bytes:
    return photo_like(640, 480, 7_919 * i + 1, quality=90)


def prepare(work: Path, n: int) -> tuple[Path, Path]:
    """(LLaVA json path, mix dir): n 640x480 photo-like images as files + JSON list, and as 384 shards."""
    llava_json, mix = work / "llava.json", work / "mix"
    if llava_json.is_file() and (mix / "index.parquet").is_file() and len(json.loads(llava_json.read_text())) == n:
        return llava_json, mix
    samples = make_samples(n, text_only_every=0, size=(8, 8), source="bench")
    with Pool() as pool:
        images = pool.map(_image, range(n), chunksize=16)
    (work / "images").mkdir(parents=True, exist_ok=True)
    for s, data in zip(samples, images):
        s["image_bytes"] = data
        (work / s["image"]).write_bytes(data)
    records = [{"id": s["id"], "image": s["image"], "conversations": s["conversations"]} for s in samples]
    llava_json.write_text(json.dumps(records))
    write_mix(mix, samples, mix="bench", shard_size=256, resolution=RES, quality=95)
    return llava_json, mix


# ---- baseline: LLaVA's per-sample path


def expand2square(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """LLaVA-1.5 `expand2square`: pad to the longer side, centred with floor offsets."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new(img.mode, (side, side), background)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


class LlavaStyle(torch.utils.data.Dataset):
    def __init__(self, json_path: Path, hf: bool):
        self.records = json.loads(json_path.read_text())
        self.folder = json_path.parent
        self.processor = None
        if hf:
            try:  # transformers 5 names the PIL backend (no torchvision here) explicitly
                from transformers import SiglipImageProcessorPil as Processor
            except ImportError:
                from transformers import SiglipImageProcessor as Processor
            self.processor = Processor(size={"height": RES, "width": RES})

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        record = self.records[i]
        img = expand2square(Image.open(self.folder / record["image"]).convert("RGB"), FILL)
        if self.processor is not None:
            pixels = self.processor.preprocess(img, return_tensors="pt")["pixel_values"][0]
        else:
            arr = np.asarray(img.resize((RES, RES), Image.BICUBIC), dtype=np.float32)
            pixels = torch.from_numpy((arr / 255.0 - 0.5) / 0.5).permute(2, 0, 1)
        return {"key": record["id"], "json": record, "pixel_values": pixels}


def collate(items: list[dict]) -> dict:
    return {"pixel_values": torch.stack([it["pixel_values"] for it in items]), "keys": [it["key"] for it in items]}


def baseline_loader(json_path: Path, *, hf: bool, batch_size: int, workers: int):
    return torch.utils.data.DataLoader(LlavaStyle(json_path, hf), batch_size=batch_size, shuffle=True,
                                       num_workers=workers, collate_fn=collate, drop_last=True,
                                       generator=torch.Generator().manual_seed(0))


def ours_loader(mix: Path, *, batch_size: int, workers: int, verify: bool = True):
    return make_loader(mix, encode=lambda raw: raw, collate=collate, batch_size=batch_size, seed=0,
                       num_workers=workers, verify=verify)


# ---- timing


def per_worker_rate(make, workers: int) -> float:
    """Samples/s per worker over one epoch (worker start-up included, as a training epoch pays it)."""
    t, n = time.perf_counter(), 0
    for batch in make():
        pixels = batch["pixel_values"]
        if pixels.dtype == torch.uint8:  # ours: normalised by the consumer, and timed
            pixels = normalize_pixels(pixels)
        n += len(pixels)
    return n / (time.perf_counter() - t) / max(1, workers)


def verification_cost(mix: Path, *, batch_size: int, pairs: int) -> None:
    """Verified vs unverified epochs in this process (the per-sample cost, not worker start-up), ABBA order."""
    make = {v: (lambda v=v: ours_loader(mix, batch_size=batch_size, workers=0, verify=v)) for v in (True, False)}
    rates: dict[bool, list[float]] = {True: [], False: []}
    for r in range(pairs):
        for v in ((True, False) if r % 2 == 0 else (False, True)):
            rates[v].append(per_worker_rate(make[v], 0))
    ratios = [a / b for a, b in zip(rates[True], rates[False])]
    index = make[True]().index
    epoch_s = len(index) / statistics.median(rates[False])  # an unverified epoch
    members = []  # every member an epoch hashes, read once; then the hashing alone is timed
    for shard, name in enumerate(index.names):
        data = (index.shards_dir / name).read_bytes()
        for pos in np.flatnonzero(index.shard == shard):
            members.append(data[index.json_offset[pos]: index.json_offset[pos] + index.json_size[pos]])
            if index.jpg_offset[pos] >= 0:
                members.append(data[index.jpg_offset[pos]: index.jpg_offset[pos] + index.jpg_size[pos]])
    t = time.perf_counter()
    for m in members:
        hashlib.sha256(m).digest()
    hash_s = time.perf_counter() - t
    q = statistics.quantiles(ratios, n=4)
    print(f"\nverification, in process, {pairs} ABBA pairs of epochs: verified / unverified = "
          f"{statistics.median(ratios):.3f} (median; quartiles {q[0]:.3f}-{q[2]:.3f}); budget >= 0.90")
    print(f"  sha256 of every member alone: {hash_s * 1e3:.0f} ms per epoch = {100 * hash_s / epoch_s:.1f}% of "
          f"an unverified epoch (ratio {epoch_s / (epoch_s + hash_s):.3f} without noise)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="samples (640x480 originals)")
    ap.add_argument("--workers", default="0,1", help="comma list; 0 = in the main process")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3, help="epochs per loader (median reported), interleaved")
    ap.add_argument("--pairs", type=int, default=11, help="verified/unverified epoch pairs for the ratio")
    ap.add_argument("--work", type=Path, help="keep the generated data here (reused when it matches --n)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one core per loader process, as in a DataLoader worker

    work = args.work or Path(tempfile.mkdtemp(prefix="imp-bench-loader-"))
    t = time.perf_counter()
    json_path, mix = prepare(work, args.n)
    took = time.perf_counter() - t
    print(f"data: {args.n} samples, originals 640x480 -> shards at {RES} under {work} ({took:.1f} s)")
    bs = args.batch_size
    for workers in [int(w) for w in args.workers.split(",")]:
        loaders = {
            "ours (shards, offsets)": lambda workers=workers: ours_loader(mix, batch_size=bs, workers=workers),
            "ours, unverified (trusted)": lambda workers=workers: ours_loader(
                mix, batch_size=bs, workers=workers, verify=False
            ),
            "llava-style (PIL+numpy)": lambda workers=workers: baseline_loader(
                json_path, hf=False, batch_size=bs, workers=workers
            ),
            "llava-style (HF processor)": lambda workers=workers: baseline_loader(
                json_path, hf=True, batch_size=bs, workers=workers
            ),
        }
        for make in loaders.values():  # warm the page cache and the imports once, untimed
            for _, _ in zip(range(2), make()):
                pass
        rates: dict[str, list[float]] = {name: [] for name in loaders}
        for _ in range(args.repeat):  # interleaved, so drift hits every loader alike
            for name, make in loaders.items():
                rates[name].append(per_worker_rate(make, workers))
        med = {name: statistics.median(r) for name, r in rates.items()}
        ours = med["ours (shards, offsets)"]
        print(f"\nnum_workers={workers}, batch {bs}, samples/s per worker (median of {args.repeat} epochs):")
        for name, rate in med.items():
            ratio = "" if rate == ours else f"   ours is {ours / rate:.2f}x"
            print(f"  {name:<28} {rate:8.1f}{ratio}")
    verification_cost(mix, batch_size=bs, pairs=args.pairs)


if __name__ == "__main__":
    main()
