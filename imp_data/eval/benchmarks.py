"""The paper's benchmarks, read from their published files: one loader per benchmark split -> EvalItems.

Each loader reads LLaVA's eval question files (prompt suffixes already inside, docs/eval.md §2.2) plus the
official annotations, from `ROOT/<benchmark>/` laid out as LLaVA's `playground/data/eval/<benchmark>`:

  vqav2/      llava_vqav2_mscoco_val.jsonl + v2_mscoco_val2014_annotations.json + val2014/ (scored here);
              llava_vqav2_mscoco_test-dev2015.jsonl + llava_vqav2_mscoco_test2015.jsonl + test2015/ (EvalAI)
  gqa/        llava_gqa_testdev_balanced.jsonl, testdev_balanced_questions.json, images/
  vizwiz/     val.json (official annotations) + val/ (scored here); llava_test.jsonl + test/ (EvalAI)
  textvqa/    llava_textvqa_val_v051_ocr.jsonl, TextVQA_0.5.1_val.json, train_images/
  pope/       llava_pope_test.jsonl, coco/coco_pope_{adversarial,popular,random}.json, val2014/
  scienceqa/  llava_test_CQM-A.json, problems.json, pid_splits.json, images/test/<pid>/image.png
  mmbench/    mmbench_dev_20230712.tsv (scored here), mmbench_test_20230712.tsv (server); images base64 inside
  mme/        llava_mme.jsonl, MME_Benchmark_release_version/<category>/ (images and question\\tanswer .txt
              side by side, or in images/ + questions_answers_YN/)

The model sees `EvalItem.prompt` = "<image>\\n" + the question text, exactly as LLaVA's generation modules
build it; the answer file records `logged_prompt` and `question_id` as those modules do (docs/eval.md §2.4).
The lmms-lab Hub parquet copies of the same benchmarks are read into the same items by `imp_data.eval.lmms`.
`list_images(name, root)` lists a benchmark's images (name, bytes) for decontamination: the image files of
this layout and the images embedded in lmms-lab parquet files, whichever are under `root`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from imp_data.core.errors import SourceFormatError
from imp_data.eval.lmms_parquet import list_parquet_images
from imp_data.eval.published import _get, _json, is_missing, read_jsonl, read_mmbench_tsv

SHORT = "Answer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."
VIZWIZ_SUFFIX = "When the provided information is insufficient, respond with 'Unanswerable'.\n" + SHORT
MME_YES_NO = "Please answer yes or no."
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class EvalItem:
    """One question: the user text (suffix included, `<image>` first), its image, its references."""

    benchmark: str
    qid: str  # unique within the split; the key predictions are scored and paired by
    prompt: str
    image_path: Path | None = None
    image_bytes: bytes | None = None
    answers: list[str] = field(default_factory=list)
    category: str = ""
    meta: dict = field(default_factory=dict)
    question_id: int | str | None = None  # as the question file spells it (the answer line's key); default qid
    logged_prompt: str | None = None  # the answer line's `prompt`; default: `prompt` without "<image>\n"
    # reads the encoded image on demand (an lmms-lab parquet row), so a split need not hold all its images
    image_loader: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def image_jpeg(self) -> bytes | None:  # the generate() interface: encoded image bytes
        if self.image_bytes is not None:
            return self.image_bytes
        if self.image_loader is not None:
            return self.image_loader()
        return self.image_path.read_bytes() if self.image_path else None


# ---- questions from the published files ------------------------------------------------------------------


def _question(benchmark: str, where: str, q: dict, image_dir: Path, **kwargs) -> EvalItem:
    """A model_vqa_loader question: `<image>\\n` + the file's text, verbatim (docs/eval.md §2.2)."""
    qid, text = _get(q, "question_id", where), _get(q, "text", where)
    kwargs.setdefault("qid", str(qid))
    return EvalItem(benchmark, prompt="<image>\n" + text, image_path=image_dir / _get(q, "image", where),
                    question_id=qid, logged_prompt=text, **kwargs)


def _gold(table: dict, key: str, where: str, source: Path):
    if key not in table:
        raise SourceFormatError(f"{where}: question {key} has no annotation in {source}")
    return table[key]


# ---- loaders ----------------------------------------------------------------------------------------------


def load_vqav2(root: Path) -> list[EvalItem]:
    """VQAv2 val, scored here with vqaEval (the paper's split is test-dev: `load_vqav2_testdev`)."""
    ann_path = root / "v2_mscoco_val2014_annotations.json"
    answers = {str(a["question_id"]): [x["answer"] for x in a["answers"]] for a in _json(ann_path)["annotations"]}
    return [_question("vqav2", where, q, root / "val2014",
                      answers=_gold(answers, str(_get(q, "question_id", where)), where, ann_path))
            for where, q in read_jsonl(root / "llava_vqav2_mscoco_val.jsonl")]


def load_vqav2_testdev(root: Path) -> list[EvalItem]:
    """VQAv2 test-dev (docs/eval.md §3.1): no answers here; EvalAI scores the upload."""
    return [_question("vqav2", where, q, root / "test2015")
            for where, q in read_jsonl(root / "llava_vqav2_mscoco_test-dev2015.jsonl")]


def load_gqa(root: Path) -> list[EvalItem]:
    gold_path = root / "testdev_balanced_questions.json"
    gold = _json(gold_path)
    items = []
    for where, q in read_jsonl(root / "llava_gqa_testdev_balanced.jsonl"):
        ann = _gold(gold, str(_get(q, "question_id", where)), where, gold_path)
        items.append(_question("gqa", where, q, root / "images", answers=[ann["answer"]],
                               meta={"balanced": ann.get("isBalanced", True)}))
    return items


def load_vizwiz(root: Path) -> list[EvalItem]:
    """VizWiz val from the official annotations, with lmms-eval's suffix (docs/eval.md §6; the paper's split is
    test)."""
    items = []
    for k, a in enumerate(_json(root / "val.json")):
        where = f"{root / 'val.json'} record {k}"
        text, image = f"{_get(a, 'question', where)}\n{VIZWIZ_SUFFIX}", _get(a, "image", where)
        items.append(EvalItem("vizwiz", image, "<image>\n" + text, root / "val" / image,
                              answers=[x["answer"] for x in _get(a, "answers", where)], logged_prompt=text))
    return items


def load_vizwiz_test(root: Path) -> list[EvalItem]:
    """VizWiz test (docs/eval.md §6): LLaVA's `llava_test.jsonl`; EvalAI scores the upload."""
    return [_question("vizwiz", where, q, root / "test") for where, q in read_jsonl(root / "llava_test.jsonl")]


def textvqa_question(prompt: str) -> str:
    """eval_textvqa.py's `prompt_processor`: the lower-cased question recovered from a recorded prompt (§8.2).

    Example:
        >>> textvqa_question("What Is It?\\nReference OCR token: a, b\\nAnswer the question using a single word.")
        'what is it?'
    """
    lines = prompt.split("\n")
    if prompt.startswith("OCR tokens: "):
        match = re.search(r"Question: (.*?) Short answer:", prompt, re.DOTALL)
        if match is None:
            raise ValueError(f"prompt {prompt[:80]!r} has no 'Question: ... Short answer:'")
        question = match.group(1)
    elif "Reference OCR token: " in prompt and len(lines) == 3:
        question = lines[1] if prompt.startswith("Reference OCR token:") else lines[0]
    elif len(lines) == 2:
        question = lines[0]
    else:
        raise ValueError(f"prompt {prompt[:80]!r} is in none of eval_textvqa.py's layouts")
    return question.lower()


def load_textvqa(root: Path) -> list[EvalItem]:
    """TextVQA val. LLaVA's `question_id` is the image id; annotations are found as eval_textvqa.py does, by
    (image_id, question recovered from the prompt and lower-cased) (docs/eval.md §8.1-8.2)."""
    ann_path = root / "TextVQA_0.5.1_val.json"
    gold = {(d["image_id"], d["question"].lower()): d for d in _json(ann_path)["data"]}
    items = []
    for where, q in read_jsonl(root / "llava_textvqa_val_v051_ocr.jsonl"):
        try:
            question = textvqa_question(_get(q, "text", where))
        except ValueError as err:
            raise SourceFormatError(f"{where}: {err}") from None
        key = (_get(q, "question_id", where), question)
        if key not in gold:
            raise SourceFormatError(f"{where}: no annotation with image_id {key[0]!r} and question {question!r} "
                                    f"in {ann_path}")
        ann = gold[key]
        items.append(_question("textvqa", where, q, root / "train_images", qid=str(ann["question_id"]),
                               answers=ann["answers"]))
    return items


def load_pope(root: Path) -> list[EvalItem]:
    labels = {}
    for path in sorted((root / "coco").glob("coco_pope_*.json")):
        category = path.stem.removeprefix("coco_pope_")
        for where, row in read_jsonl(path):
            labels[(category, str(_get(row, "question_id", where)))] = _get(row, "label", where)
    items = []
    for where, q in read_jsonl(root / "llava_pope_test.jsonl"):
        key = (_get(q, "category", where), str(_get(q, "question_id", where)))
        if key not in labels:
            raise SourceFormatError(f"{where}: question {key[1]} ({key[0]}) has no label in "
                                    f"{root / 'coco' / f'coco_pope_{key[0]}.json'}")
        items.append(_question("pope", where, q, root / "val2014", answers=[labels[key]], category=key[0]))
    return items


def load_scienceqa(root: Path, single_pred_prompt: bool = False) -> list[EvalItem]:
    """ScienceQA-IMG test: the CQM-A question file, scored against problems.json (image questions only).

    model_vqa_science strips the stored question and records the `<image>` line in its prompt (docs/eval.md §7.1).
    Imp's sqa.sh omits `--single-pred-prompt` (LLaVA passes it): the default follows Imp."""
    problems_path = root / "problems.json"
    problems = _json(problems_path)
    items = []
    for k, rec in enumerate(_json(root / "llava_test_CQM-A.json")):
        where = f"{root / 'llava_test_CQM-A.json'} record {k}"
        if "image" not in rec:
            continue  # IMG subset
        pid = str(_get(rec, "id", where))
        text = "<image>\n" + _get(rec, "conversations", where)[0]["value"].replace("<image>", "").strip()
        if single_pred_prompt:
            text = f"{text}\n{LETTER}"
        prob = _gold(problems, pid, where, problems_path)
        items.append(EvalItem("scienceqa", pid, text, root / "images" / "test" / pid / rec["image"],
                              answers=[str(prob["answer"])], meta={"num_options": len(prob["choices"])},
                              question_id=rec["id"], logged_prompt=text))
    return items


def mmbench_question(row: dict) -> tuple[str, list]:
    """model_vqa_mmbench's question (docs/eval.md §11): hint, question, options A-D up to the first missing one.

    Returns:
        (question text without "<image>", the options).

    Example:
        >>> mmbench_question({"question": "Q?", "hint": "nan", "A": "x", "B": "y", "C": "none", "D": "w"})
        ('Q?\\nA. x\\nB. y', ['x', 'y'])
    """
    options = []
    for letter in "ABCD":
        if is_missing(row.get(letter)):
            break
        options.append(row[letter])
    question = row["question"]
    if not is_missing(row.get("hint")):
        question = row["hint"] + "\n" + question
    return question + "".join(f"\n{chr(65 + i)}. {opt}" for i, opt in enumerate(options)), options


def _mmbench(root: Path, tsv: str, single_pred_prompt: bool) -> list[EvalItem]:
    items = []
    for where, row in read_mmbench_tsv(root / tsv):
        question, options = mmbench_question(row)
        prompt = "<image>\n" + question + (f"\n{LETTER}" if single_pred_prompt else "")
        try:
            index, image = int(row["index"]), base64.b64decode(row["image"])
        except ValueError as err:
            raise SourceFormatError(f"{where}: bad index or base64 image ({err})") from None
        answer = row.get("answer")
        items.append(EvalItem("mmbench", str(index), prompt, image_bytes=image,
                              answers=[] if is_missing(answer) else [answer], category=row.get("category") or "",
                              meta={"options": options, "option_char": [chr(65 + i) for i in range(len(options))]},
                              question_id=index, logged_prompt=question))
    return items


def load_mmbench(root: Path, single_pred_prompt: bool = False) -> list[EvalItem]:
    """MMBench dev (answers inside: scored here with circular matching, and converted for the server)."""
    return _mmbench(root, "mmbench_dev_20230712.tsv", single_pred_prompt)


def load_mmbench_test(root: Path, single_pred_prompt: bool = False) -> list[EvalItem]:
    """MMBench test (no answers: only the OpenCompass server scores it)."""
    return _mmbench(root, "mmbench_test_20230712.tsv", single_pred_prompt)


def _mme_answers(folder: Path, stem: str, where: str) -> list[tuple[str, str]]:
    for txt in (folder / f"{stem}.txt", folder / "questions_answers_YN" / f"{stem}.txt"):
        if txt.is_file():
            text = txt.read_text(encoding="utf-8")
            pairs = [line.split("\t") for line in text.splitlines() if line.strip()]
            bad = [k for k, p in enumerate(pairs) if len(p) != 2]
            if bad:
                raise SourceFormatError(f"{txt} line {bad[0] + 1}: expected 'question<TAB>answer'")
            return [(q.strip(), a.strip()) for q, a in pairs]
    raise SourceFormatError(f"{where}: no {stem}.txt in {folder} or {folder / 'questions_answers_YN'}")


def load_mme(root: Path) -> list[EvalItem]:
    """MME: LLaVA's question file (its question_id is `<category>/<image file>`), the gold answer from the
    official per-image txt. The jsonl's question may lack the txt's " Please answer yes or no." (lmms-eval
    strips it, docs/eval.md §10), so the lookup tries both spellings."""
    base = root / "MME_Benchmark_release_version"
    items = []
    for where, q in read_jsonl(root / "llava_mme.jsonl"):
        qid = str(_get(q, "question_id", where))
        category, name = qid.split("/", 1)[0], qid.rsplit("/", 1)[-1]
        qa = dict(_mme_answers(base / category, Path(name).stem, where))
        question = _get(q, "text", where).replace(SHORT, "").strip()
        candidates = (question, f"{question} {MME_YES_NO}", f"{question}  {MME_YES_NO}")
        gold = next((qa[c] for c in candidates if c in qa), None)
        if gold is None:
            raise SourceFormatError(f"{where}: question {question!r} is not in {base / category}'s "
                                    f"{Path(name).stem}.txt")
        items.append(_question("mme", where, q, base, qid=f"{qid}#{question}", answers=[gold], category=category,
                               meta={"image": qid}))
    return items


LOADERS: dict[str, Callable[[Path], list[EvalItem]]] = {
    "vqav2": load_vqav2, "vqav2_testdev": load_vqav2_testdev, "gqa": load_gqa, "vizwiz": load_vizwiz,
    "vizwiz_test": load_vizwiz_test, "scienceqa": load_scienceqa, "textvqa": load_textvqa, "pope": load_pope,
    "mme": load_mme, "mmbench": load_mmbench, "mmbench_test": load_mmbench_test,
}
IMAGE_DIRS = {"vqav2": ("val2014", "test2015"), "gqa": ("images",), "vizwiz": ("val", "test"),
              "textvqa": ("train_images",), "pope": ("val2014",), "scienceqa": ("images",),
              "mme": ("MME_Benchmark_release_version",)}


def load_benchmark(name: str, root: Path) -> list[EvalItem]:
    """The items of one split (a `LOADERS` key) read from its benchmark folder."""
    if name not in LOADERS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(LOADERS)}")
    return LOADERS[name](Path(root))


def list_images(name: str, root: Path) -> Iterator[tuple[str, bytes]]:
    """Every image of a benchmark's image sets, all splits (for decontamination); names relative to `root`.

    The LLaVA layout's image files (MMBench: the TSVs' base64 images, `<tsv>#<index>`), then the images
    embedded in any lmms-lab parquet file under `root` (`<parquet file>#<row>`, all configs and splits).
    """
    root = Path(root)
    if name == "mmbench":
        for tsv in sorted(root.glob("mmbench_*.tsv")):
            for _where, row in read_mmbench_tsv(tsv):
                yield f"{tsv.name}#{row['index']}", base64.b64decode(row["image"])
    else:
        for folder in IMAGE_DIRS[name]:
            for path in sorted((root / folder).rglob("*")):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    yield str(path.relative_to(root)), path.read_bytes()
    yield from list_parquet_images(root)
