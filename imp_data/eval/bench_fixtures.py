"""Tiny benchmark sets in their published layouts (see `imp_data.eval.benchmarks`), for the demo's eval
and the tests: a few questions each, real Pillow images, the official file shapes."""

from __future__ import annotations

import base64
import csv
import io
import json
import random
from pathlib import Path

from imp_data.eval.benchmarks import SHORT, VIZWIZ_SUFFIX
from imp_data.fixtures.pictures import photo

TEN = lambda a, b: [a] * 7 + [b] * 3  # noqa: E731  (10 annotator answers, mostly agreeing)


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    elif isinstance(data, str):
        path.write_text(data)
    else:
        path.write_text(json.dumps(data, indent=1))


def _jsonl(path: Path, rows: list[dict]) -> None:
    _write(path, "".join(json.dumps(r) + "\n" for r in rows))


def _mmbench_tsv(path: Path, images: list[str], with_answer: bool) -> None:
    """Circular copies (index + k * 1e6, options rotated) of one question per image; test has no answers."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(["index", "question", "hint", "A", "B", "C", "D", *(["answer"] if with_answer else []),
                     "category", "l2-category", "image", "source", "comment"])
    options = ["cat", "dog", "bird"]
    for q, image in enumerate(images):
        for rot in range(3):
            rotated = options[rot:] + options[:rot]
            answer = ["ABC"[rotated.index(options[q])]] if with_answer else []
            writer.writerow([q + rot * 1_000_000, "What animal is shown?", "nan" if q else "A pet photo.",
                             *rotated, "nan", *answer, "attribute_recognition", "FP-S", image, "fixture", "nan"])
    _write(path, buf.getvalue())


def write_benchmark_fixtures(out: Path, seed: int = 0) -> dict[str, Path]:
    """Write all eight benchmarks, every split `imp_data.eval.splits` knows, under `out/<name>/`.

    Returns:
        benchmark name -> its folder.
    """
    rng = random.Random(seed)
    img = lambda: photo(rng, 96, 72)  # noqa: E731
    roots = {name: out / name for name in ("vqav2", "gqa", "vizwiz", "textvqa", "pope", "scienceqa", "mmbench", "mme")}

    qs = [("What color is the sky?", "blue", "light blue"), ("How many dogs?", "2", "two"),
          ("Is it raining?", "no", "yes")]
    _jsonl(roots["vqav2"] / "llava_vqav2_mscoco_val.jsonl", [
        {"question_id": 100 + i, "image": f"COCO_val2014_{i:012d}.jpg", "text": f"{q}\n{SHORT}", "category": "default"}
        for i, (q, _, _) in enumerate(qs)])
    _write(roots["vqav2"] / "v2_mscoco_val2014_annotations.json", {"annotations": [
        {"question_id": 100 + i, "answers": [{"answer": a, "answer_id": k + 1} for k, a in enumerate(TEN(g, alt))]}
        for i, (_, g, alt) in enumerate(qs)]})
    for i in range(len(qs)):
        _write(roots["vqav2"] / "val2014" / f"COCO_val2014_{i:012d}.jpg", img())
    # test-dev is part of test2015: the upload lists every test2015 question, '' where test-dev has none
    test = [{"question_id": 4_000_000 + i, "image": f"COCO_test2015_{i:012d}.jpg", "text": f"{q}\n{SHORT}",
             "category": "default"} for i, (q, _, _) in enumerate(qs)]
    _jsonl(roots["vqav2"] / "llava_vqav2_mscoco_test-dev2015.jsonl", test[:2])
    _jsonl(roots["vqav2"] / "llava_vqav2_mscoco_test2015.jsonl", [test[2], test[0], test[1]])
    for row in test:
        _write(roots["vqav2"] / "test2015" / row["image"], img())

    _jsonl(roots["gqa"] / "llava_gqa_testdev_balanced.jsonl", [
        {"question_id": f"20{i}", "image": f"n{i}.jpg", "text": f"{q}\n{SHORT}"} for i, (q, _, _) in enumerate(qs)])
    _write(roots["gqa"] / "testdev_balanced_questions.json",
           {f"20{i}": {"answer": g, "isBalanced": True} for i, (_, g, _) in enumerate(qs)})
    for i in range(len(qs)):
        _write(roots["gqa"] / "images" / f"n{i}.jpg", img())

    _write(roots["vizwiz"] / "val.json", [
        {"image": f"VizWiz_val_{i:08d}.jpg", "question": q, "answerable": 1,
         "answers": [{"answer": a, "answer_confidence": "yes"} for a in TEN(g, "unanswerable")]}
        for i, (q, g, _) in enumerate(qs[:2])])
    for i in range(2):
        _write(roots["vizwiz"] / "val" / f"VizWiz_val_{i:08d}.jpg", img())
        _write(roots["vizwiz"] / "test" / f"VizWiz_test_{i:08d}.jpg", img())
    _jsonl(roots["vizwiz"] / "llava_test.jsonl", [
        {"question_id": i, "image": f"VizWiz_test_{i:08d}.jpg", "text": f"{q}\n{VIZWIZ_SUFFIX}"}
        for i, (q, _, _) in enumerate(qs[:2])])

    # LLaVA's TextVQA question_id is the image id; annotations are found by (image_id, question) (docs/eval.md §8.2)
    _jsonl(roots["textvqa"] / "llava_textvqa_val_v051_ocr.jsonl", [
        {"question_id": f"{i:016x}", "image": f"{i:016x}.jpg",
         "text": f"What does the sign say?\nReference OCR token: open, {i}\n{SHORT}"} for i in range(2)])
    _write(roots["textvqa"] / "TextVQA_0.5.1_val.json", {"data": [
        {"question_id": 34602 + i, "image_id": f"{i:016x}", "question": "what does the sign say?",
         "answers": TEN("open", "opened")} for i in range(2)]})
    for i in range(2):
        _write(roots["textvqa"] / "train_images" / f"{i:016x}.jpg", img())

    pope_q, labels = [], {}
    for c, category in enumerate(("adversarial", "popular", "random")):
        for k, (obj, label) in enumerate((("dog", "yes"), ("car", "no"))):
            qid = c * 10 + k + 1
            image = f"COCO_val2014_{c * 10 + k:012d}.jpg"
            pope_q.append({"question_id": qid, "image": image, "text": f"Is there a {obj} in the image?\n{SHORT}",
                           "category": category})
            labels.setdefault(category, []).append({"question_id": qid, "image": image,
                                                    "text": f"Is there a {obj} in the image?", "label": label})
            _write(roots["pope"] / "val2014" / image, img())
    _jsonl(roots["pope"] / "llava_pope_test.jsonl", pope_q)
    for category, rows in labels.items():
        _jsonl(roots["pope"] / "coco" / f"coco_pope_{category}.json", rows)

    sqa, problems = [], {}
    for k in range(3):
        pid = str(900 + k)
        choices = ["mammal", "bird", "fish"][: 2 + (k % 2)]
        options = "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))
        text = f"Context: N/A\nWhich kind of animal is this?\n{options}"
        rec = {"id": pid, "conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": "A"}]}
        if k < 2:
            rec["image"] = "image.png"
            rec["conversations"][0]["value"] = "<image>\n" + text
            _write(roots["scienceqa"] / "images" / "test" / pid / "image.png", img())
        sqa.append(rec)
        problems[pid] = {"answer": k % 2, "choices": choices, "image": rec.get("image"), "split": "test"}
    _write(roots["scienceqa"] / "llava_test_CQM-A.json", sqa)
    _write(roots["scienceqa"] / "problems.json", problems)
    _write(roots["scienceqa"] / "pid_splits.json", {"test": sorted(problems)})

    images = [base64.b64encode(img()).decode() for _ in range(2)]
    _mmbench_tsv(roots["mmbench"] / "mmbench_dev_20230712.tsv", images, with_answer=True)
    _mmbench_tsv(roots["mmbench"] / "mmbench_test_20230712.tsv", images, with_answer=False)

    # flat categories keep image and txt side by side; artwork & co. use images/ + questions_answers_YN/
    mme_q = []
    base = roots["mme"] / "MME_Benchmark_release_version"
    for category, split_layout in (("existence", False), ("count", False), ("artwork", True)):
        for k in range(2):
            image = f"images/{k:012d}.jpg" if split_layout else f"{k:012d}.jpg"
            txt = f"questions_answers_YN/{k:012d}.txt" if split_layout else f"{k:012d}.txt"
            _write(base / category / image, img())
            pairs = [("Is there a dog in this image?", "Yes"), ("Is there a cat in this image?", "No")]
            _write(base / category / txt, "".join(f"{q} Please answer yes or no.\t{a}\n" for q, a in pairs))
            for q, _ in pairs:
                mme_q.append({"question_id": f"{category}/{k:012d}.jpg", "image": f"{category}/{image}",
                              "text": f"{q}\n{SHORT}", "category": category})
    _jsonl(roots["mme"] / "llava_mme.jsonl", mme_q)
    return roots
