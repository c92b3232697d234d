"""Synthetic sources at REAL record counts, in their published formats, with one shared tiny image set.

Used by `bench/scale.py` to run the full `imp_1m` selection here: 665,298 LLaVA records (ids mixed
str/int, 21,953 TextCaps, 40,688 text-only), ~2.33M DVQA questions over 200K charts, 28,299 ChartQA,
39,463 DocVQA, 23,946 InfographicVQA questions, 4,903 AI2D question files, 102,025 ShareGPT-4V,
12,356 LAION-GPT-V rows, 708,653 ALLaVA Instruct records (505,588 LAION + 203,065 VFLAN).
Records are short but shaped like the real ones; every JSON file is written streaming.

`write_rehearsal_mirror` (for `bench/rehearsal.py`) writes the same records plus what a build needs to
render them: every record its own distinct 32x32 image, in the container it is published in (LLaVA's
COCO/GQA/TextVQA/VG zips, ALLaVA's zip chunks, folders elsewhere), benchmark folders in LLaVA's eval
layout, and injected attrition (corrupt images, duplicate records, training images planted in
benchmarks) recorded in a ledger, ATTRITION.json. DocVQA and InfographicVQA get their real image counts
there (10,194 and 4,406 train images); `write_all` keeps 4 questions an image, as `bench/scale.py` measured.

    python bench/synth_sources.py OUT_DIR [--fraction 0.1]
"""

from __future__ import annotations

import argparse
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

COUNTS = {
    "llava_665k": 665_298, "textcaps": 21_953, "sharegpt_text": 40_688,
    "dvqa_images": 200_000, "dvqa_per_image": 11.65, "chartqa_human": 7_398, "chartqa_augmented": 20_901,
    "docvqa": 39_463, "infographicvqa": 23_946, "ai2d": 4_903, "sharegpt4v": 102_025, "laion": 12_356,
    "allava_laion": 505_588, "allava_vflan": 203_065,
}


def _dump_list(path: Path, records) -> int:
    """Write a JSON list one element at a time (the generator never holds the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for rec in records:
            f.write(("," if n else "") + "\n" + json.dumps(rec, ensure_ascii=False))
            n += 1
        f.write("\n]")
    return n


def conv(q: str, a: str, image: bool = True) -> list[dict]:
    return [{"from": "human", "value": ("<image>\n" if image else "") + q}, {"from": "gpt", "value": a}]


def llava_records(n: int, textcaps: int, text_only: int, rng: random.Random):
    plain = n - textcaps - text_only
    for i in range(plain):
        kind = i % 4
        if kind == 0:
            yield {"id": f"{i:012d}", "image": f"coco/train2017/{i:012d}.jpg",
                   "conversations": conv("What is in the picture?", "A street with cars and people walking by.")}
        elif kind == 1:
            yield {"id": 2000000 + i, "image": f"gqa/images/{2000000 + i}.jpg", "conversations": conv(
                "Is the sky blue?\nAnswer the question using a single word or phrase.", "Yes")
                + [{"from": "human", "value": "Is there a car?"}, {"from": "gpt", "value": "No"}]}
        elif kind == 2:
            yield {"id": f"{i:09d}X", "image": f"ocr_vqa/images/{i:09d}X.jpg",
                   "conversations": conv("Who is the author of this book?", "Jane Doe")}
        else:
            yield {"id": f"VG_{i}", "image": f"vg/VG_100K/{i}.jpg",
                   "conversations": conv("Describe the region [0.1, 0.2, 0.5, 0.6].", "A red umbrella.")}
    for i in range(textcaps):
        yield {"id": f"{i:016x}", "image": f"textvqa/train_images/{i:016x}.jpg",
               "conversations": conv("Provide a one-sentence caption for the provided image.", "A sign.")}
    for i in range(text_only):
        yield {"id": f"sharegpt_{i}", "conversations": conv("Write a poem.", "Roses are red." * 5, image=False)}


def scaled_counts(fraction: float = 1.0) -> dict:
    """COUNTS at a fraction, as `write_all` writes them (at least one of everything)."""
    return {k: (max(1, int(v * fraction)) if k != "dvqa_per_image" else v) for k, v in COUNTS.items()}


def _same(name: str, records):
    return records


def write_all(out: Path, fraction: float = 1.0, seed: int = 0) -> dict:
    rng = random.Random(seed)
    c = scaled_counts(fraction)
    written = _write_annotations(out, c, rng, _same)
    rows = [{"link": f"https://x.invalid/{i}.jpg", "caption": "A detailed caption.", "message_id": str(i),
             "timestamp": "2023-11-01", "image": None} for i in range(c["laion"])]
    (out / "laion_gpt4v" / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out / "laion_gpt4v" / "data" / "train-00000-of-00001.parquet")
    written["laion"] = len(rows)
    return _write_allava(out, c, _same, written)


def _write_annotations(out: Path, c: dict, rng: random.Random, dup) -> dict:
    """Every annotation file but LAION-GPT-V's and ALLaVA's; `dup(name, records)` may repeat records.
    DocVQA/InfographicVQA put 4 questions on an image unless `c` says how many images (`<name>_images`)."""
    written = {}
    written["llava_665k"] = _dump_list(out / "llava_665k" / "llava_v1_5_mix665k.json",
                                       dup("llava_665k",
                                           llava_records(c["llava_665k"], c["textcaps"], c["sharegpt_text"], rng)))

    def dvqa():
        q = 0
        for img in range(c["dvqa_images"]):
            for k in range(int(c["dvqa_per_image"]) + (img % 3 == 0)):
                q += 1
                yield {"question": f"What is the value of label{k}?", "question_id": q, "template_id": "data",
                       "answer": str(k), "image": f"bar_train_{img:08d}.png", "answer_bbox": []}
    written["dvqa"] = _dump_list(out / "dvqa" / "train_qa.json", dvqa())

    for kind in ("human", "augmented"):
        n = c[f"chartqa_{kind}"]
        per = 2 if kind == "human" else 1
        written[f"chartqa_{kind}"] = _dump_list(out / "chartqa" / "ChartQA Dataset" / "train" / f"train_{kind}.json", (
            {"imgname": f"{kind}_{i // per}.png", "query": "What is the highest value?", "label": "42"}
            for i in range(n)))

    def rrc(n, image_key, fmt, images=None):
        for i in range(n):
            yield {"questionId": i, "question": "what is the date?",
                   image_key: fmt.format(i * images // n if images else i // 4),
                   "answers": ["1/8/93", "1/8/93"], "data_split": "train"}

    for name, path, key, fmt, n in (
        ("docvqa", "docvqa/train/train_v1.0_withQT.json", "image", "documents/doc{}_1.png", c["docvqa"]),
        ("infographicvqa", "infographicvqa/infographicVQA_train_v1.0.json", "image_local_name", "{}.jpeg",
         c["infographicvqa"]),
    ):
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w") as f:  # {"data": [...]} written streaming too
            f.write('{"dataset_split": "train", "data": [')
            for i, rec in enumerate(rrc(n, key, fmt, c.get(f"{name}_images"))):
                f.write(("," if i else "") + json.dumps(rec))
            f.write("]}")
        written[name] = n

    qdir = out / "ai2d" / "questions"
    qdir.mkdir(parents=True, exist_ok=True)
    for i in range(c["ai2d"]):
        (qdir / f"{i}.png.json").write_text(json.dumps({"imageName": f"{i}.png", "questions": {
            "What is A?": {"abcLabel": True, "answerTexts": ["a", "b", "c", "d"], "correctAnswer": 1,
                           "questionId": f"{i}.png-0"},
            "What is B?": {"abcLabel": True, "answerTexts": ["a", "b", "c", "d"], "correctAnswer": 2,
                           "questionId": f"{i}.png-1"}}}))
    # imp_1m excludes AI2D's test questions through this list (Qwen-VL's ~3K test ids): the last 20%
    (out / "ai2d" / "ai2d_test_ids.txt").write_text("".join(f"{i}.png\n" for i in range(c["ai2d"] * 4 // 5, c["ai2d"])))
    written["ai2d"] = c["ai2d"]

    written["sharegpt4v"] = _dump_list(
        out / "sharegpt4v" / "sharegpt4v_instruct_gpt4-vision_cap100k.json", dup("sharegpt4v", (
            {"id": f"sa_{i}", "image": f"sam/images/sa_{i}.jpg",
             "conversations": conv("Describe this image.", "A detailed caption. " * 8)}
            for i in range(c["sharegpt4v"]))))

    return written


def _write_allava(out: Path, c: dict, dup, written: dict) -> dict:
    for kind, n in (("laion", c["allava_laion"]), ("vflan", c["allava_vflan"])):
        written[f"allava_{kind}"] = _dump_list(
            out / "allava" / f"allava_{kind}" / f"ALLaVA-Instruct-{kind.upper()}-4V.json", dup("allava", (
                {"id": f"allava_{kind}_inst_{i}", "image": f"allava_{kind}/images/{i}.jpeg",
                 "conversations": conv("How does this affect the value?",
                                       "The inclusion of gemstones enhances it. " * 6)}
                for i in range(n))))
    return written


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


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--fraction", type=float, default=1.0, help="scale all counts (1.0 = real counts)")
    args = ap.parse_args()
    print(write_all(Path(args.out_dir), args.fraction))
