"""Tiny lmms-lab Hub copies of the benchmarks (see `imp_data.eval.lmms`), for the tests: the published repo
layout, file names and column types, real Pillow images in HF `Image` structs, and the same questions as
`imp_data.fixtures.eval_benchmarks` writes in LLaVA's layout, so the two layouts can be compared item by item.

Files are written with small row groups and split into shards where the Hub copy is, so the lazy image
reader and the multi-file splits are exercised.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from imp_data.fixtures.eval_benchmarks import TEN
from imp_data.fixtures.pictures import photo

IMAGE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
QS = [("What color is the sky?", "blue", "light blue"), ("How many dogs?", "2", "two"),
      ("Is it raining?", "no", "yes")]


def write_parquet(path: Path, rows: list[dict], types: dict[str, pa.DataType], row_group_size: int = 2) -> Path:
    """One parquet file with the given column types, as HF `datasets` writes a split shard."""
    schema = pa.schema([pa.field(name, kind) for name, kind in types.items()])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return path


def _shards(folder: Path, split: str, rows: list[dict], types: dict, n: int, suffix: str = "") -> None:
    """`split-0000k-of-0000n[-hash].parquet` shards, rows dealt out in order."""
    size = -(-len(rows) // n)
    for k in range(n):
        tail = f"-{suffix}{k:04x}" if suffix else ""
        write_parquet(folder / f"{split}-{k:05d}-of-{n:05d}{tail}.parquet", rows[k * size:(k + 1) * size], types)


def write_lmms_fixtures(out: Path, seed: int = 0) -> dict[str, Path]:
    """Write the eight benchmarks as lmms-lab's Hub repos under `out/<name>/`.

    Returns:
        benchmark name -> its folder.
    """
    rng = random.Random(seed)
    img = lambda name=None: {"bytes": photo(rng, 96, 72), "path": name}  # noqa: E731
    roots = {name: out / name for name in ("vqav2", "gqa", "vizwiz", "textvqa", "pope", "scienceqa", "mmbench", "mme")}
    text, strings = pa.string(), pa.list_(pa.string())

    # lmms-lab/VQAv2: data/validation-*.parquet, answers = 10 {answer, answer_confidence, answer_id} structs
    answer = pa.struct([pa.field("answer", text), pa.field("answer_confidence", text),
                        pa.field("answer_id", pa.int64())])
    _shards(roots["vqav2"] / "data", "validation", [
        {"question_type": "what", "multiple_choice_answer": g, "image_id": i, "answer_type": "other",
         "question_id": 100 + i, "question": q, "image": img(),
         "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(TEN(g, alt))]}
        for i, (q, g, alt) in enumerate(QS)],
        {"question_type": text, "multiple_choice_answer": text, "answers": pa.list_(answer), "image_id": pa.int64(),
         "answer_type": text, "question_id": pa.int64(), "question": text, "image": IMAGE}, 2)

    # lmms-lab/GQA: one folder per config, split "testdev"
    _shards(roots["gqa"] / "testdev_balanced_instructions", "testdev", [
        {"id": f"20{i}", "imageId": f"n{i}", "question": q, "answer": g, "fullAnswer": f"The answer is {g}.",
         "isBalanced": True} for i, (q, g, _) in enumerate(QS)],
        {"id": text, "imageId": text, "question": text, "answer": text, "fullAnswer": text,
         "isBalanced": pa.bool_()}, 1)
    _shards(roots["gqa"] / "testdev_balanced_images", "testdev", [
        {"id": f"n{i}", "image": img()} for i in reversed(range(len(QS)))], {"id": text, "image": IMAGE}, 1)

    # lmms-lab/VizWiz-VQA: data/val-0000k-of-00005-<hash>.parquet; question_id is the image stem
    _shards(roots["vizwiz"] / "data", "val", [
        {"question_id": f"VizWiz_val_{i:08d}", "image": img(), "question": q, "answers": TEN(g, "unanswerable"),
         "category": "other"} for i, (q, g, _) in enumerate(QS[:2])],
        {"question_id": text, "image": IMAGE, "question": text, "answers": strings, "category": text}, 2, "9f3a")

    # lmms-lab/textvqa: data/{train,validation}-*.parquet (train too: list_images covers every split)
    types = {"image_id": text, "question_id": pa.int64(), "question": text, "question_tokens": strings,
             "image": IMAGE, "image_width": pa.int64(), "image_height": pa.int64(), "flickr_original_url": text,
             "flickr_300k_url": text, "answers": strings, "image_classes": strings, "set_name": text,
             "ocr_tokens": strings}
    row = lambda i, split: {  # noqa: E731
        "image_id": f"{i:016x}", "question_id": 34602 + i, "question": "what does the sign say?",
        "question_tokens": ["what", "does", "the", "sign", "say"], "image": img(), "image_width": 96,
        "image_height": 72, "flickr_original_url": "", "flickr_300k_url": "", "answers": TEN("open", "opened"),
        "image_classes": ["Sign"], "set_name": split, "ocr_tokens": ["open", str(i)]}
    _shards(roots["textvqa"] / "data", "validation", [row(i, "val") for i in range(2)], types, 1)
    _shards(roots["textvqa"] / "data", "train", [row(100, "train")], types, 1)

    # lmms-lab/POPE: data/test-0000k-of-00003.parquet; question_id restarts in each category
    pope = []
    for c, category in enumerate(("adversarial", "popular", "random")):
        for k, (obj, label) in enumerate((("dog", "yes"), ("car", "no"))):
            source = f"COCO_val2014_{c * 10 + k:012d}"
            pope.append({"id": str(len(pope)), "question_id": str(k + 1), "question": f"Is there a {obj} in the image?",
                         "answer": label, "image_source": source, "image": img(f"{source}.jpg"), "category": category})
    _shards(roots["pope"] / "data", "test", pope, {"id": text, "question_id": text, "question": text, "answer": text,
                                                   "image_source": text, "image": IMAGE, "category": text}, 3)

    # lmms-lab/ScienceQA: ScienceQA-IMG/{split}-00000-of-00001.parquet, no problem id column
    sqa = []
    for k in range(2):
        sqa.append({"image": img("image.png"), "question": "Which kind of animal is this?",
                    "choices": ["mammal", "bird", "fish"][: 2 + (k % 2)], "answer": k % 2, "hint": "",
                    "task": "closed choice", "grade": "grade2", "subject": "natural science", "topic": "biology",
                    "category": "Classification", "skill": "Identify animals", "lecture": "", "solution": ""})
    _shards(roots["scienceqa"] / "ScienceQA-IMG", "test", sqa, {
        "image": IMAGE, "question": text, "choices": strings, "answer": pa.int8(), "hint": text, "task": text,
        "grade": text, "subject": text, "topic": text, "category": text, "skill": text, "lecture": text,
        "solution": text}, 1)

    # lmms-lab/MMBench: en/dev-00000-of-00001.parquet; circular copies as rows; missing = null or "nan"
    options, mmb = ["cat", "dog", "bird"], []
    for q in range(2):
        picture = img()
        for rot in range(3):
            rotated = options[rot:] + options[:rot]
            mmb.append({"index": q + rot * 1_000_000, "question": "What animal is shown?",
                        "hint": None if q else "A pet photo.", "A": rotated[0], "B": rotated[1], "C": rotated[2],
                        "D": "nan" if rot else None, "answer": "ABC"[rotated.index(options[q])],
                        "category": "attribute_recognition", "image": picture, "source": "fixture",
                        "L2-category": "FP-S", "comment": None, "split": "dev"})
    _shards(roots["mmbench"] / "en", "dev", mmb, {
        "index": pa.int64(), "question": text, "hint": text, "A": text, "B": text, "C": text, "D": text,
        "answer": text, "category": text, "image": IMAGE, "source": text, "L2-category": text, "comment": text,
        "split": text}, 1)

    # lmms-lab/MME: data/test-0000k-of-00004-<hash>.parquet, question_id = <category>/<image file>
    mme = []
    for category in ("existence", "count", "artwork"):
        for k in range(2):
            picture = img(f"{k:012d}.jpg")
            for q, a in (("Is there a dog in this image?", "Yes"), ("Is there a cat in this image?", "No")):
                mme.append({"question_id": f"{category}/{k:012d}.jpg", "image": picture,
                            "question": f"{q} Please answer yes or no.", "answer": a, "category": category})
    _shards(roots["mme"] / "data", "test", mme, {"question_id": text, "image": IMAGE, "question": text, "answer": text,
                                                 "category": text}, 4, "a25d")
    return roots
