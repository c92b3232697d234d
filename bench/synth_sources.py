"""Synthetic sources at REAL record counts, in their published formats, with one shared tiny image set.

Used by `bench/scale.py` to run the full `imp_1m` selection here: 665,298 LLaVA records (ids mixed
str/int, 21,953 TextCaps, 40,688 text-only), ~2.33M DVQA questions over 200K charts, 28,299 ChartQA,
39,463 DocVQA, 23,946 InfographicVQA questions, 4,903 AI2D question files, 102,025 ShareGPT-4V,
12,356 LAION-GPT-V rows, 708,653 ALLaVA Instruct records (505,588 LAION + 203,065 VFLAN).
Records are short but shaped like the real ones; every JSON file is written streaming.

`write_rehearsal_mirror` in `bench/synth_images.py` (for `bench/rehearsal.py`) writes the same records plus
what a build needs to render them: every record its own distinct 32x32 image, in the container it is
published in (LLaVA's COCO/GQA/TextVQA/VG zips, ALLaVA's zip chunks, folders elsewhere), benchmark folders
in LLaVA's eval layout, and injected attrition (corrupt images, duplicate records, training images planted
in benchmarks) recorded in a ledger, ATTRITION.json. DocVQA and InfographicVQA get their real image counts
there (10,194 and 4,406 train images); `write_all` keeps 4 questions an image, as `bench/scale.py` measured.

    python bench/synth_sources.py OUT_DIR [--fraction 0.1]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--fraction", type=float, default=1.0, help="scale all counts (1.0 = real counts)")
    args = ap.parse_args()
    print(write_all(Path(args.out_dir), args.fraction))
