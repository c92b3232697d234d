"""Images and attrition for the full-count rehearsal (bench/rehearsal.py), over bench/synth_sources.py's
records: every record its own distinct 32x32 image in the container it is published in (zips as LLaVA and
ALLaVA ship them, folders where the recipe reads folders), benchmark folders with planted training images,
and a ledger (ATTRITION.json) of what was broken on purpose, so the rehearsal can check the build's losses
against what was injected, one by one.
"""

from __future__ import annotations

import functools
import io
import json
import random
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from bench.synth_sources import _same, _write_allava, _write_annotations, scaled_counts

# ---------------------------------------------------------------------------------------------------------
# Images and attrition for the full-count rehearsal (bench/rehearsal.py). Every record above gets its own
# image in the container it is published in (zips as LLaVA/ALLaVA ship them, folders where the recipe reads
# folders), and a ledger says what was broken on purpose, so the rehearsal can check the build's losses
# against what was injected, one by one.

IMAGE_SIDE, CELL = 32, 4  # 8x8 random colour cells: every image visibly distinct (phash), ~1 KB as JPEG
BLOCK = 1024  # images drawn per seeded block (cheap, and any one image can be regenerated alone)
ZIP_CHUNK = 50_000  # ALLaVA-LAION's images come as several `images_*.zip` chunks
CORRUPT_RATE, DUPLICATE_RATE = 0.005, 0.002
OVERLAP = {"coco": ("pope", 300), "sam": ("vqav2", 100), "allava_laion": ("vqav2", 200)}  # set: (benchmark, n at 1.0)


REAL_IMAGES = {"docvqa_images": 10_194, "infographicvqa_images": 4_406}  # pages/infographics the questions ask about


def rehearsal_counts(fraction: float = 1.0) -> dict:
    """`scaled_counts` plus DocVQA's and InfographicVQA's real image counts (4 questions an image would
    give DocVQA 9,866 pages, fewer than imp_1m's 10K take; the real train split has 10,194)."""
    return {**scaled_counts(fraction), **{k: max(1, int(v * fraction)) for k, v in REAL_IMAGES.items()}}


@dataclass(frozen=True)
class ImageSet:
    """One published image container and the record image paths it serves (path of image k: `PATHS[name]`)."""

    source: str
    name: str
    prefix: str  # the record-path prefix of the recipe's image root
    location: str  # under OUT/images/: a folder, a .zip, or a glob of .zip chunks
    member_prefix: str  # as the recipe's image root (`**/`: matched by file name)
    count: int

    @property
    def kind(self) -> str:
        return "chunks" if "*" in self.location else "zip" if self.location.endswith(".zip") else "dir"

    def path(self, k: int) -> str:
        return PATHS[self.name](k)

    def member(self, k: int) -> str:
        rest = self.path(k)[len(self.prefix):]
        return f"images/{rest.rsplit('/', 1)[-1]}" if self.member_prefix == "**/" else self.member_prefix + rest


PATHS = {  # the record generators' image paths, image by image
    "coco": lambda k: f"coco/train2017/{4 * k:012d}.jpg",
    "gqa": lambda k: f"gqa/images/{2000000 + 4 * k + 1}.jpg",
    "ocr_vqa": lambda k: f"ocr_vqa/images/{4 * k + 2:09d}X.jpg",
    "vg": lambda k: f"vg/VG_100K/{4 * k + 3}.jpg",
    "vg2": lambda k: f"vg/VG_100K_2/{k}.jpg",
    "textvqa": lambda k: f"textvqa/train_images/{k:016x}.jpg",
    "dvqa": lambda k: f"bar_train_{k:08d}.png",
    "chartqa_human": lambda k: f"human_{k}.png",
    "chartqa_augmented": lambda k: f"augmented_{k}.png",
    "docvqa": lambda k: f"documents/doc{k}_1.png",
    "ai2d": lambda k: f"abc_images/{k}.png",
    "infographicvqa": lambda k: f"{k}.jpeg",
    "sam": lambda k: f"sam/images/sa_{k}.jpg",
    "allava_laion": lambda k: f"allava_laion/images/{k}.jpeg",
    "allava_vflan": lambda k: f"allava_vflan/images/{k}.jpeg",
    "laion": lambda k: f"laion/{k}.jpg",  # served over HTTP, never on disk
}


def image_sets(c: dict) -> list[ImageSet]:
    """The image containers of every source at counts `c` (`scaled_counts`), as imp_1m's image roots read them."""
    plain = c["llava_665k"] - c["textcaps"] - c["sharegpt_text"]

    def quarter(r: int) -> int:  # llava_records cycles coco, gqa, ocr_vqa, vg
        return len(range(r, plain, 4))

    chart = "chartqa/ChartQA Dataset/train/png"
    return [
        ImageSet("llava_665k", "coco", "coco/train2017/", "llava/coco/train2017.zip", "train2017/", quarter(0)),
        ImageSet("llava_665k", "gqa", "gqa/images/", "llava/gqa/images.zip", "images/", quarter(1)),
        ImageSet("llava_665k", "ocr_vqa", "ocr_vqa/images/", "llava/ocr_vqa/images", "", quarter(2)),
        ImageSet("llava_665k", "textvqa", "textvqa/train_images/", "llava/textvqa/train_val_images.zip",
                 "train_images/", c["textcaps"]),
        ImageSet("llava_665k", "vg", "vg/VG_100K/", "llava/vg/images.zip", "VG_100K/", quarter(3)),
        ImageSet("llava_665k", "vg2", "vg/VG_100K_2/", "llava/vg/images2.zip", "VG_100K_2/", 0),
        ImageSet("dvqa", "dvqa", "", "dvqa/images", "", c["dvqa_images"]),
        ImageSet("chartqa", "chartqa_human", "", chart, "", -(-c["chartqa_human"] // 2)),
        ImageSet("chartqa", "chartqa_augmented", "", chart, "", c["chartqa_augmented"]),
        ImageSet("docvqa", "docvqa", "documents/", "docvqa/train/documents", "",
                 c.get("docvqa_images", -(-c["docvqa"] // 4))),
        ImageSet("ai2d", "ai2d", "", "ai2d", "", c["ai2d"]),
        ImageSet("infographicvqa", "infographicvqa", "", "infographicvqa/infographicVQA_train_v1.0_images", "",
                 c.get("infographicvqa_images", -(-c["infographicvqa"] // 4))),
        ImageSet("sharegpt4v", "sam", "sam/images/", "sharegpt4v/sam/images", "", c["sharegpt4v"]),
        ImageSet("allava", "allava_laion", "allava_laion/images/", "allava/allava_laion/image_chunks/images_*.zip",
                 "**/", c["allava_laion"]),
        ImageSet("allava", "allava_vflan", "allava_vflan/images/", "allava/vflan/image_191-task_1k.zip", "",
                 c["allava_vflan"]),
    ]


@functools.lru_cache(maxsize=64)
def _cells(name: str, block: int, seed: int):
    rng = np.random.default_rng([zlib.crc32(name.encode()), block, seed])
    return rng.integers(0, 256, (BLOCK, IMAGE_SIDE // CELL, IMAGE_SIDE // CELL, 3), dtype=np.uint8)


def tile_image(name: str, k: int, seed: int = 0, fmt: str = "JPEG") -> bytes:
    """Image k of set `name`: 8x8 random colour cells, 32x32 — distinct pixels for every (name, k)."""
    cell = _cells(name, k // BLOCK, seed)[k % BLOCK]
    out = io.BytesIO()
    img = Image.fromarray(cell.repeat(CELL, 0).repeat(CELL, 1))
    img.save(out, "PNG") if fmt == "PNG" else img.save(out, "JPEG", quality=90)
    return out.getvalue()


def broken(data: bytes, kind: str, k: int) -> bytes:
    """`truncated`: the first half (the decoder runs out); `garbage`: the format's magic, then noise."""
    if kind == "truncated":
        return data[: len(data) // 2]
    return data[:8] + random.Random(k).randbytes(len(data) - 8)


def corrupt_images(s: ImageSet, seed: int = 0, rate: float = CORRUPT_RATE) -> dict[int, str]:
    """Image k -> how it is broken: `rate` of the set (at least one), alternately truncated and garbage."""
    if not s.count:
        return {}
    picked = sorted(random.Random(f"{seed}:{s.name}:corrupt").sample(range(s.count), max(1, round(rate * s.count))))
    return {k: ("truncated", "garbage")[j % 2] for j, k in enumerate(picked)}


def image_bytes(s: ImageSet, k: int, seed: int = 0, corrupt: dict | None = None) -> bytes:
    data = tile_image(s.name, k, seed, "PNG" if s.path(k).endswith(".png") else "JPEG")
    kind = (corrupt or {}).get(k)
    return broken(data, kind, k) if kind else data


def _write_unit(unit: tuple) -> int:
    """Write images [start, stop) of one set into its folder, or one zip (chunk) of it; a worker's task."""
    s, start, stop, target, seed = unit
    corrupt = corrupt_images(s, seed)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if s.kind == "dir":
        made = set()
        for k in range(start, stop):
            path = target / s.path(k)[len(s.prefix):]
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            path.write_bytes(image_bytes(s, k, seed, corrupt))
    else:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
            for k in range(start, stop):
                zf.writestr(zipfile.ZipInfo(s.member(k), date_time=(1980, 1, 1, 0, 0, 0)),
                            image_bytes(s, k, seed, corrupt))
    return stop - start


def _units(sets: list[ImageSet], root: Path, seed: int) -> list[tuple]:
    units = []
    for s in sets:
        if s.kind == "dir":
            units += [(s, a, min(a + 25_000, s.count), str(root / s.location), seed) for a in range(0, s.count, 25_000)]
        elif s.kind == "zip":
            units.append((s, 0, s.count, str(root / s.location), seed))
        else:
            for j, a in enumerate(range(0, s.count, ZIP_CHUNK)):
                units.append((s, a, min(a + ZIP_CHUNK, s.count), str(root / s.location.replace("*", str(j))), seed))
    return sorted(units, key=lambda u: u[1] - u[2])  # largest first: the pool ends together


def write_images(out: Path, c: dict, seed: int = 0, workers: int = 2) -> dict:
    """Every record's image under OUT/images/, in its published container; returns {set name: images}."""
    from concurrent.futures import ProcessPoolExecutor

    sets = image_sets(c)
    with ProcessPoolExecutor(max(1, workers)) as pool:
        list(pool.map(_write_unit, _units(sets, out / "images", seed)))
    return {s.name: s.count for s in sets}


class Duplicates:
    """`dup(name, records)` for `_write_annotations`: repeats ~DUPLICATE_RATE of a stream's records (the
    first one always, so tiny runs have one), right after the original; counts what it added."""

    def __init__(self, rate: float = DUPLICATE_RATE):
        self.step, self.added = max(2, round(1 / rate)), Counter()

    def __call__(self, name: str, records):
        for p, rec in enumerate(records):
            yield rec
            if p % self.step == 0:
                self.added[name] += 1
                yield rec


def laion_fates(n: int, take: int, seed: int = 0, dead_rate: float = 0.18) -> list[str]:
    """What each of the n LAION-GPT-V URLs does: `ok`, `corrupt` (an image cut in half, served 200),
    `http_404`, `not_image` (an HTML page served 200), `timeout` (no answer within the client's read
    timeout). Dead links are `dead_rate` of the rows but never so many that fewer than `take` usable
    images remain (real LAION-GPT-V: 12,356 rows for a 10K take, so past ~19% link rot 10K cannot be met)."""
    corrupt = max(1, round(CORRUPT_RATE * n))
    dead = max(0, min(round(dead_rate * n), n - take - corrupt - max(1, n // 300)))
    kinds = ["timeout"] * max(1 if dead >= 3 else 0, round(0.10 * dead))
    kinds += ["not_image"] * max(1 if dead >= 3 else 0, round(0.25 * dead))
    kinds += ["http_404"] * (dead - len(kinds)) + ["corrupt"] * corrupt
    fates = kinds + ["ok"] * (n - len(kinds))
    random.Random(f"{seed}:laion:fates").shuffle(fates)
    return fates


def write_laion(out: Path, n: int, base_url: str, dup: Duplicates | None = None) -> int:
    """LAION-GPT-V's parquet with links to `base_url/laion/<i>.jpg` (the rehearsal's loopback server)."""
    dup = dup or _same
    rows = list(dup("laion_gpt4v", ({"link": f"{base_url}/{PATHS['laion'](i)}", "caption": "A detailed caption.",
                                     "message_id": str(i), "timestamp": "2023-11-01", "image": None}
                                    for i in range(n))))
    (out / "laion_gpt4v" / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out / "laion_gpt4v" / "data" / "train-00000-of-00001.parquet")
    return len(rows)


def _reencoded(data: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, "JPEG", quality=75)
    return out.getvalue()


def write_benchmarks(out: Path, c: dict, fraction: float, seed: int = 0) -> list[dict]:
    """Decontamination benchmarks in LLaVA's eval layout (OUT/eval/<name>, every split the eval job reads),
    with training images planted where a real mirror has them: POPE asks about COCO val2014 images that
    COCO 2017 moved into train2017 (LLaVA's); VQAv2 test-dev about ShareGPT-4V and ALLaVA ones here (web
    images recur across datasets). Half exact copies, half re-encoded. TextVQA also as its published zip
    (train_images/ = TextCaps' images, which the textcaps rule drops, so it must match nothing). Returns
    the planted copies."""
    from imp_data.eval.benchmarks import SHORT
    from imp_data.fixtures.eval_benchmarks import write_benchmark_fixtures
    from imp_data.images import hash_image

    write_benchmark_fixtures(out / "eval", seed)
    sets = {s.name: s for s in image_sets(c)}
    planted, asked = [], {"pope": [], "vqav2": []}
    for name, (bench, n) in OVERLAP.items():
        s = sets[name]
        bad = corrupt_images(s, seed)
        pool = [k for k in range(s.count) if k not in bad]
        for j, k in enumerate(random.Random(f"{seed}:{name}:overlap").sample(
                pool, min(len(pool), max(2, round(n * fraction))))):
            data = image_bytes(s, k, seed)
            copy = data if j % 2 == 0 else _reencoded(data)
            image = (f"COCO_val2014_{700_000 + len(asked[bench]):012d}.jpg" if bench == "pope"
                     else f"COCO_test2015_{800_000 + len(asked[bench]):012d}.jpg")
            rel = f"eval/{bench}/{'val2014' if bench == 'pope' else 'test2015'}/{image}"
            (out / rel).write_bytes(copy)
            asked[bench].append(image)
            distance = (int(hash_image(data)[1], 16) ^ int(hash_image(copy)[1], 16)).bit_count()
            planted.append({"source": s.source, "image": s.path(k), "benchmark": bench, "bench_path": rel,
                            "copy": "exact" if j % 2 == 0 else "reencoded", "distance": distance})
    _append_jsonl(out / "eval/pope/llava_pope_test.jsonl", [
        {"question_id": 9_000_000 + j, "image": im, "text": f"Is there a dog in the image?\n{SHORT}",
         "category": "random"}
        for j, im in enumerate(asked["pope"])])
    _append_jsonl(out / "eval/pope/coco/coco_pope_random.json", [
        {"question_id": 9_000_000 + j, "image": im, "text": "Is there a dog in the image?", "label": "no"}
        for j, im in enumerate(asked["pope"])])
    rows = [{"question_id": 9_000_000 + j, "image": im, "text": f"What is shown?\n{SHORT}", "category": "default"}
            for j, im in enumerate(asked["vqav2"])]
    _append_jsonl(out / "eval/vqav2/llava_vqav2_mscoco_test-dev2015.jsonl", rows)
    _append_jsonl(out / "eval/vqav2/llava_vqav2_mscoco_test2015.jsonl", rows)  # test2015 lists test-dev's too
    textcaps = sets["textvqa"]
    zip_path = out / "benchmarks" / "textvqa" / "train_val_images.zip"
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:
        for k in range(min(3, textcaps.count)):
            zf.writestr(textcaps.member(k), image_bytes(textcaps, k, seed))
        for k in range(3):
            zf.writestr(f"train_images/{0xfeed0000 + k:016x}.jpg", tile_image("textvqa_val", k, seed))
    return planted


def _append_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def write_rehearsal_mirror(out: Path, fraction: float = 1.0, seed: int = 0, workers: int = 2) -> dict:
    """Annotations (with duplicate records), every image in its container (with corrupt ones) and the
    benchmarks (with planted training images) for `bench/rehearsal.py`; returns the attrition ledger, also
    written to OUT/ATTRITION.json. LAION-GPT-V's parquet is written by the rehearsal (`write_laion`), since
    its links name the loopback server's port."""
    rng, c, dup = random.Random(seed), rehearsal_counts(fraction), Duplicates()
    written = _write_allava(out, c, dup, _write_annotations(out, c, rng, dup))
    images = write_images(out, c, seed, workers)
    planted = write_benchmarks(out, c, fraction, seed)
    corrupt = {}
    for s in image_sets(c):
        for k, kind in corrupt_images(s, seed).items():
            corrupt.setdefault(s.source, {})[s.path(k)] = kind
    ledger = {"fraction": fraction, "seed": seed, "counts": c, "records": written, "images": images,
              "duplicates": dict(dup.added), "corrupt": corrupt, "planted": planted,
              "image_roots": {s.source: {} for s in image_sets(c)}}
    for s in image_sets(c):
        ledger["image_roots"][s.source][s.prefix] = {"location": str(out / "images" / s.location),
                                                     "member_prefix": s.member_prefix}
    (out / "ATTRITION.json").write_text(json.dumps(ledger, indent=1))
    return ledger
