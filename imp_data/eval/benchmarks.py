"""The paper's benchmarks, read from their published files: one loader per benchmark -> EvalItems.

Each loader reads LLaVA's eval question files (prompt suffixes already inside, EVAL §2.2) plus the
official annotations, from `ROOT/<benchmark>/` laid out as LLaVA's `playground/data/eval/<benchmark>`:

  vqav2/      llava_vqav2_mscoco_val.jsonl, v2_mscoco_val2014_annotations.json, val2014/
  gqa/        llava_gqa_testdev_balanced.jsonl, testdev_balanced_questions.json, images/
  vizwiz/     val.json (official annotations), val/
  textvqa/    llava_textvqa_val_v051_ocr.jsonl, TextVQA_0.5.1_val.json, train_images/
  pope/       llava_pope_test.jsonl, coco/coco_pope_{adversarial,popular,random}.json, val2014/
  scienceqa/  llava_test_CQM-A.json, problems.json, pid_splits.json, images/test/<pid>/image.png
  mmbench/    mmbench_dev_20230712.tsv (images base64 inside)
  mme/        llava_mme.jsonl, MME_Benchmark_release_version/<category>/{*.jpg|png, *.txt question\\tanswer}

`list_images(name, root)` lists a benchmark's image files (name, bytes) for decontamination.
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from imp_data.errors import ImpDataError

SHORT = "Answer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."
VIZWIZ_SUFFIX = "When the provided information is insufficient, respond with 'Unanswerable'.\n" + SHORT
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class EvalItem:
    """One question: the user text (suffix included, `<image>` first), its image, its references."""

    benchmark: str
    qid: str
    prompt: str
    image_path: Path | None = None
    image_bytes: bytes | None = None
    answers: list[str] = field(default_factory=list)
    category: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def image_jpeg(self) -> bytes | None:  # the generate() interface: encoded image bytes
        if self.image_bytes is not None:
            return self.image_bytes
        return self.image_path.read_bytes() if self.image_path else None


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise ImpDataError(f"{path}: missing — lay the benchmark out as LLaVA's playground/data/eval")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _json(path: Path):
    if not path.is_file():
        raise ImpDataError(f"{path}: missing — lay the benchmark out as LLaVA's playground/data/eval")
    return json.loads(path.read_text())


def _prompt(text: str) -> str:
    return "<image>\n" + text.replace("<image>", "").strip()


def load_vqav2(root: Path) -> list[EvalItem]:
    answers = {str(a["question_id"]): [x["answer"] for x in a["answers"]]
               for a in _json(root / "v2_mscoco_val2014_annotations.json")["annotations"]}
    return [EvalItem("vqav2", str(q["question_id"]), _prompt(q["text"]), root / "val2014" / q["image"],
                     answers=answers[str(q["question_id"])]) for q in _jsonl(root / "llava_vqav2_mscoco_val.jsonl")]


def load_gqa(root: Path) -> list[EvalItem]:
    gold = _json(root / "testdev_balanced_questions.json")
    return [EvalItem("gqa", str(q["question_id"]), _prompt(q["text"]), root / "images" / q["image"],
                     answers=[gold[str(q["question_id"])]["answer"]],
                     meta={"balanced": gold[str(q["question_id"])].get("isBalanced", True)})
            for q in _jsonl(root / "llava_gqa_testdev_balanced.jsonl")]


def load_vizwiz(root: Path) -> list[EvalItem]:
    return [EvalItem("vizwiz", a["image"], _prompt(f"{a['question']}\n{VIZWIZ_SUFFIX}"), root / "val" / a["image"],
                     answers=[x["answer"] for x in a["answers"]]) for a in _json(root / "val.json")]


def load_textvqa(root: Path) -> list[EvalItem]:
    gold = {str(d["question_id"]): d["answers"] for d in _json(root / "TextVQA_0.5.1_val.json")["data"]}
    return [EvalItem("textvqa", str(q["question_id"]), _prompt(q["text"]), root / "train_images" / q["image"],
                     answers=gold[str(q["question_id"])]) for q in _jsonl(root / "llava_textvqa_val_v051_ocr.jsonl")]


def load_pope(root: Path) -> list[EvalItem]:
    labels = {}
    for path in sorted((root / "coco").glob("coco_pope_*.json")):
        category = path.stem.removeprefix("coco_pope_")
        for row in _jsonl(path):
            labels[(category, str(row["question_id"]))] = row["label"]
    items = []
    for q in _jsonl(root / "llava_pope_test.jsonl"):
        key = (q["category"], str(q["question_id"]))
        if key not in labels:
            raise ImpDataError(f"{root}: question {key[1]} ({key[0]}) has no label in coco/coco_pope_{key[0]}.json")
        items.append(EvalItem("pope", str(q["question_id"]), _prompt(q["text"]), root / "val2014" / q["image"],
                              answers=[labels[key]], category=q["category"]))
    return items


def load_scienceqa(root: Path, single_pred_prompt: bool = False) -> list[EvalItem]:
    """ScienceQA-IMG test: the CQM-A question file, scored against problems.json (image questions only).
    Imp's sqa.sh omits `--single-pred-prompt` (LLaVA passes it): the default follows Imp."""
    problems = _json(root / "problems.json")
    items = []
    for rec in _json(root / "llava_test_CQM-A.json"):
        pid = str(rec["id"])
        if "image" not in rec:
            continue  # IMG subset
        text = rec["conversations"][0]["value"].replace("<image>", "").strip()
        if single_pred_prompt:
            text = f"{text}\n{LETTER}"
        prob = problems[pid]
        items.append(EvalItem("scienceqa", pid, "<image>\n" + text, root / "images" / "test" / pid / rec["image"],
                              answers=[str(prob["answer"])], meta={"num_options": len(prob["choices"])}))
    return items


def _missing(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("nan", "none", ""))


def load_mmbench(root: Path, single_pred_prompt: bool = False) -> list[EvalItem]:
    items = []
    with open(root / "mmbench_dev_20230712.tsv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            options = []
            for letter in "ABCD":
                if _missing(row.get(letter)):
                    break
                options.append(row[letter])
            question = row["question"]
            if not _missing(row.get("hint")):
                question = row["hint"] + "\n" + question
            question += "".join(f"\n{chr(65 + i)}. {opt}" for i, opt in enumerate(options))
            if single_pred_prompt:
                question += "\n" + LETTER
            items.append(EvalItem("mmbench", row["index"], "<image>\n" + question,
                                  image_bytes=base64.b64decode(row["image"]), answers=[row["answer"]],
                                  category=row.get("category", ""), meta={"options": options}))
    return items


def load_mme(root: Path) -> list[EvalItem]:
    items = []
    base = root / "MME_Benchmark_release_version"
    for q in _jsonl(root / "llava_mme.jsonl"):
        category, image = q["question_id"].split("/", 1)
        qa = (base / category / Path(image).with_suffix(".txt")).read_text().splitlines()
        question = q["text"].replace("\n" + SHORT, "").strip()
        gold = next((line.split("\t")[1] for line in qa if line.split("\t")[0].strip() == question), None)
        if gold is None:
            raise ImpDataError(f"{base / category}: no answer for {question!r}")
        items.append(EvalItem("mme", f"{q['question_id']}#{question}", _prompt(q["text"]), base / category / image,
                              answers=[gold], category=category, meta={"image": f"{category}/{image}"}))
    return items


LOADERS: dict[str, Callable[[Path], list[EvalItem]]] = {
    "vqav2": load_vqav2, "gqa": load_gqa, "vizwiz": load_vizwiz, "scienceqa": load_scienceqa,
    "textvqa": load_textvqa, "pope": load_pope, "mme": load_mme, "mmbench": load_mmbench,
}
IMAGE_DIRS = {"vqav2": "val2014", "gqa": "images", "vizwiz": "val", "textvqa": "train_images", "pope": "val2014",
              "scienceqa": "images", "mme": "MME_Benchmark_release_version"}


def load_benchmark(name: str, root: Path) -> list[EvalItem]:
    if name not in LOADERS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(LOADERS)}")
    return LOADERS[name](Path(root))


def list_images(name: str, root: Path) -> Iterator[tuple[str, bytes]]:
    """Every image of a benchmark's image set (for decontamination)."""
    if name == "mmbench":
        for item in load_mmbench(root):
            yield item.qid, item.image_bytes
        return
    folder = Path(root) / IMAGE_DIRS[name]
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            yield str(path.relative_to(folder)), path.read_bytes()
