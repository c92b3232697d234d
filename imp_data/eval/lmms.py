"""The benchmarks read from lmms-lab's Hugging Face Hub parquet copies, into the same EvalItems as LLaVA's layout.

`ROOT/<benchmark>/` holds the lmms-lab dataset repo as `huggingface_hub.snapshot_download(repo_id,
repo_type="dataset", local_dir=ROOT/<benchmark>)` writes it; each split is the files `LAYOUTS` names:

  vqav2/      lmms-lab/VQAv2        data/validation-*.parquet (scored here like LLaVA-layout VQAv2 val)
  gqa/        lmms-lab/GQA          testdev_balanced_instructions/testdev-*.parquet + testdev_balanced_images/...
  vizwiz/     lmms-lab/VizWiz-VQA   data/val-*.parquet
  textvqa/    lmms-lab/textvqa      data/validation-*.parquet
  pope/       lmms-lab/POPE         data/test-*.parquet (category = adversarial / popular / random)
  scienceqa/  lmms-lab/ScienceQA    ScienceQA-IMG/test-*.parquet
  mmbench/    lmms-lab/MMBench      en/dev-*.parquet
  mme/        lmms-lab/MME          data/test-*.parquet

The prompts are the ones LLaVA's question files hold (docs/eval.md §2-§11), rebuilt from the columns: the
short-answer suffix, VizWiz's unanswerable line, TextVQA's "Reference OCR token:" line, ScienceQA's
Context/question/options, MMBench's hint and options (`benchmarks.mmbench_question`), MME's question without
" Please answer yes or no." (lmms-eval's `replace_prompt`). Where the lmms-lab copy carries the LLaVA file's
ids, `qid`/`question_id` are the LLaVA loader's; where it cannot (POPE ids restart per category, ScienceQA has
no problem id), the item is named so it stays unique within the split. Images are read on demand
(`imp_data.eval.lmms_parquet`). Schema facts not confirmed against the published files are marked UNVERIFIED.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from imp_data.core.errors import SourceFormatError
from imp_data.eval.benchmarks import LETTER, MME_YES_NO, SHORT, VIZWIZ_SUFFIX, EvalItem, mmbench_question
from imp_data.eval.lmms_parquet import parquet_files, read_split
from imp_data.eval.published import is_missing

# split key -> the glob patterns (relative to ROOT/<benchmark>/) of the lmms-lab files it reads; all must match.
# File names as on the Hub: POPE data/test-0000k-of-00003.parquet, MME data/test-0000k-of-00004-<hash>.parquet,
# VizWiz data/val-0000k-of-00005-<hash>.parquet, GQA <config>/testdev-00000-of-00001.parquet, MMBench
# en/dev-00000-of-00001.parquet, ScienceQA ScienceQA-IMG/test-00000-of-00001.parquet (Hub file listings).
LAYOUTS: dict[str, tuple[str, ...]] = {
    "vqav2": ("data/validation-*.parquet",),
    "gqa": ("testdev_balanced_instructions/testdev-*.parquet", "testdev_balanced_images/testdev-*.parquet"),
    "vizwiz": ("data/val-*.parquet",),
    "scienceqa": ("ScienceQA-IMG/test-*.parquet",),
    "textvqa": ("data/validation-*.parquet",),
    "pope": ("data/test-*.parquet",),
    "mme": ("data/test-*.parquet",),
    "mmbench": ("en/dev-*.parquet",),
}


def has_layout(key: str, root: Path) -> bool:
    """True when `root` holds every file pattern lmms-lab's copy of split `key` is published as."""
    return key in LAYOUTS and all(parquet_files(Path(root), pattern) for pattern in LAYOUTS[key])


def _rows(root: Path, pattern: str, columns: Sequence[str], *, optional: Sequence[str] = (),
          image: str | None = "image") -> Iterator[tuple[str, str, dict, Callable[[], bytes] | None]]:
    """(where, row name `<file>#<row>`, row, image loader) for every row of a split, files in shard order."""
    for table in read_split(root, pattern, columns, optional=optional, image=image):
        for i, row in enumerate(table.rows):
            yield table.where(i), f"{table.name}#{i}", row, table.images.loader(i) if table.images else None


def _text(row: dict, column: str, where: str) -> str:
    value = row[column]
    if not isinstance(value, str):
        raise SourceFormatError(f"{where}: column {column!r} is {value!r}, expected a string")
    return value


def _strings(row: dict, column: str, where: str, key: str | None = None) -> list[str]:
    """A list-of-strings column; `key` picks the string out of struct elements (VQAv2's `answers`)."""
    value = row[column]
    if not isinstance(value, list):
        raise SourceFormatError(f"{where}: column {column!r} is {value!r}, expected a list")
    out = [v.get(key) if key and isinstance(v, dict) else v for v in value]
    if not all(isinstance(v, str) for v in out):
        raise SourceFormatError(f"{where}: column {column!r} holds {value!r}, expected strings"
                                + (f" or {{{key!r}: string}} structs" if key else ""))
    return out


def _short(bench: str, qid: str, question: str, image, suffix: str = SHORT, **kwargs) -> EvalItem:
    """A model_vqa_loader question whose file text is `{question}\\n{suffix}` (docs/eval.md §2.2)."""
    text = f"{question}\n{suffix}"
    return EvalItem(bench, qid, "<image>\n" + text, image_loader=image, logged_prompt=text, **kwargs)


# ---- loaders ----------------------------------------------------------------------------------------------


def load_vqav2(root: Path) -> list[EvalItem]:
    """lmms-lab/VQAv2 validation: `question`, `question_id`, `answers` = the 10 annotator structs
    {answer, answer_confidence, answer_id} in annotation order (lmms-eval vqav2/utils.py reads
    `ans["answer"]`; the struct's other fields UNVERIFIED)."""
    return [_short("vqav2", str(r["question_id"]), _text(r, "question", where), image,
                   answers=_strings(r, "answers", where, key="answer"), question_id=r["question_id"])
            for where, _, r, image in _rows(root, LAYOUTS["vqav2"][0], ("question_id", "question", "answers"))]


def load_gqa(root: Path) -> list[EvalItem]:
    """lmms-lab/GQA testdev_balanced: the instructions config (`id`, `imageId`, `question`, `answer`,
    `isBalanced`) joined by `imageId` to the images config (`id`, `image`), as lmms-eval gqa/utils.py does.
    A missing `isBalanced` column counts every question as balanced (this is the balanced split)."""
    instructions, images_pattern = LAYOUTS["gqa"]
    images = {_text(r, "id", where): image for where, _, r, image in _rows(root, images_pattern, ("id",))}
    items = []
    for where, _, r, _ in _rows(root, instructions, ("id", "imageId", "question", "answer"),
                                optional=("isBalanced",), image=None):
        image_id = _text(r, "imageId", where)
        if image_id not in images:
            raise SourceFormatError(f"{where}: imageId {image_id!r} is in none of {root}/{images_pattern}")
        balanced = r.get("isBalanced")
        items.append(_short("gqa", str(r["id"]), _text(r, "question", where), images[image_id],
                            answers=[_text(r, "answer", where)], question_id=r["id"],
                            meta={"balanced": True if balanced is None else balanced}))
    return items


def load_vizwiz(root: Path) -> list[EvalItem]:
    """lmms-lab/VizWiz-VQA val with LLaVA's unanswerable suffix. `question_id` is the image's stem
    (lmms-eval uploads `f"{question_id}.jpg"`), so the qid is the image file name, as in the LLaVA layout.
    The question is taken as published (lmms-eval capitalizes it; LLaVA's layout does not)."""
    items = []
    for where, _, r, image in _rows(root, LAYOUTS["vizwiz"][0], ("question_id", "question", "answers")):
        stem = _text(r, "question_id", where)
        items.append(_short("vizwiz", stem if stem.endswith(".jpg") else f"{stem}.jpg", _text(r, "question", where),
                            image, suffix=VIZWIZ_SUFFIX, answers=_strings(r, "answers", where, key="answer")))
    return items


def load_textvqa(root: Path) -> list[EvalItem]:
    """lmms-lab/textvqa validation. LLaVA's question line: the question capitalized (lmms-eval's
    `question.capitalize()`; LLaVA's file shows "What is the brand of this camera?"), then
    "Reference OCR token: " + `ocr_tokens` joined by ", " (always written, as lmms-eval's `ocr: true` does;
    whether LLaVA's tokens equal this column's, case included, is UNVERIFIED). `question_id` is the image
    id, as in LLaVA's file; the qid is TextVQA's question id."""
    items = []
    for where, _, r, image in _rows(root, LAYOUTS["textvqa"][0],
                                    ("image_id", "question_id", "question", "answers", "ocr_tokens")):
        question = (f"{_text(r, 'question', where).capitalize()}\n"
                    f"Reference OCR token: {', '.join(_strings(r, 'ocr_tokens', where))}")
        items.append(_short("textvqa", str(r["question_id"]), question, image,
                            answers=_strings(r, "answers", where), question_id=_text(r, "image_id", where)))
    return items


def load_pope(root: Path) -> list[EvalItem]:
    """lmms-lab/POPE test: `question`, `answer` (yes/no), `category`. Its `question_id` restarts in each
    category (the annotation files' ids; UNVERIFIED), so qid and answer-file key are `<category>/<question_id>`;
    the runner pairs answers and labels by qid within each category."""
    items = []
    for where, _, r, image in _rows(root, LAYOUTS["pope"][0], ("question_id", "question", "answer", "category")):
        category = _text(r, "category", where)
        qid = f"{category}/{r['question_id']}"
        items.append(_short("pope", qid, _text(r, "question", where), image, answers=[_text(r, "answer", where)],
                            category=category, question_id=qid))
    return items


def load_scienceqa(root: Path, single_pred_prompt: bool = False) -> list[EvalItem]:
    """lmms-lab/ScienceQA ScienceQA-IMG test (image questions only), in the CQM-A question file's format:
    "Context: {hint or N/A}\\n{question}\\nA. c1\\nB. c2..." (the context rule and the double-space squeeze
    are LLaVA's convert_sqa_to_llava_base_prompt.py; that eval.zip's file is built this way is UNVERIFIED).
    The copy has no problem id (UNVERIFIED): an `id` column is used when present, else `<file>#<row>`."""
    items = []
    for where, name, r, image in _rows(root, LAYOUTS["scienceqa"][0], ("question", "choices", "answer"),
                                       optional=("hint", "id")):
        choices, answer = _strings(r, "choices", where), r["answer"]
        if not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise SourceFormatError(f"{where}: column 'answer' is {answer!r}, expected an index into "
                                    f"its {len(choices)} choices")
        context = (r.get("hint") or "").strip() or "N/A"
        options = "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))
        text = "<image>\n" + f"Context: {context}\n{_text(r, 'question', where)}\n{options}".replace("  ", " ").strip()
        if single_pred_prompt:
            text = f"{text}\n{LETTER}"
        pid = str(r["id"]) if r.get("id") is not None else name
        items.append(EvalItem("scienceqa", pid, text, image_loader=image, answers=[str(answer)],
                              meta={"num_options": len(choices)}, question_id=pid, logged_prompt=text))
    return items


def load_mmbench(root: Path, single_pred_prompt: bool = False) -> list[EvalItem]:
    """lmms-lab/MMBench en dev: the TSV's columns (`index`, `question`, `hint`, `A`-`D`, `answer`,
    `category`), a missing value being null or "nan" (lmms-eval en_utils.py tests both); the circular copies
    are rows of their own, as in the TSV."""
    items = []
    for where, _, r, image in _rows(root, LAYOUTS["mmbench"][0], ("index", "question"),
                                    optional=("hint", "A", "B", "C", "D", "answer", "category")):
        _text(r, "question", where)
        question, options = mmbench_question(r)
        try:
            index = int(r["index"])
        except (TypeError, ValueError):
            raise SourceFormatError(f"{where}: column 'index' is {r['index']!r}, expected an integer") from None
        answer = r.get("answer")
        items.append(EvalItem("mmbench", str(index), "<image>\n" + question + (f"\n{LETTER}" if single_pred_prompt
                                                                                else ""),
                              image_loader=image, answers=[] if is_missing(answer) else [answer],
                              category=r.get("category") or "", question_id=index, logged_prompt=question,
                              meta={"options": options, "option_char": [chr(65 + i) for i in range(len(options))]}))
    return items


def load_mme(root: Path) -> list[EvalItem]:
    """lmms-lab/MME: `question_id` = `<category>/<image file>` (as LLaVA's llava_mme.jsonl; UNVERIFIED that
    they coincide), `question` ending " Please answer yes or no.", `answer` Yes/No, `category`. The prompt
    drops that ending and adds the short-answer suffix (lmms-eval mme/utils.py); qid and meta as the LLaVA
    loader's, so acc+ pairs the two questions of each image."""
    items = []
    for where, _, r, image in _rows(root, LAYOUTS["mme"][0], ("question_id", "question", "answer", "category")):
        qid = _text(r, "question_id", where)
        question = _text(r, "question", where).strip().replace(f" {MME_YES_NO}", "")
        items.append(_short("mme", f"{qid}#{question}", question, image, answers=[_text(r, "answer", where)],
                            category=_text(r, "category", where), meta={"image": qid}, question_id=qid))
    return items


LOADERS: dict[str, Callable[[Path], list[EvalItem]]] = {
    "vqav2": load_vqav2, "gqa": load_gqa, "vizwiz": load_vizwiz, "scienceqa": load_scienceqa,
    "textvqa": load_textvqa, "pope": load_pope, "mme": load_mme, "mmbench": load_mmbench,
}


def load_lmms(key: str, root: Path) -> list[EvalItem]:
    """The items of split `key` read from an lmms-lab copy under `root`.

    Raises:
        ValueError: no lmms-lab copy is known for `key` (the valid keys are listed).
    """
    if key not in LOADERS:
        raise ValueError(f"no lmms-lab copy of benchmark split {key!r}; valid: {', '.join(LOADERS)}")
    return LOADERS[key](Path(root))
