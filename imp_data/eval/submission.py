"""Answer files and server uploads in the formats LLaVA writes them (docs/eval.md §2.4, §3.1, §6, §11).

`write_answers` writes the generation modules' answer jsonl (`question_id, prompt, text, answer_id, model_id,
metadata`; MMBench adds `round_id, options, option_char`). The upload writers read such a file back, as
LLaVA's `scripts/convert_*_for_submission.py` read `merge.jsonl`, so they also convert answer files made
elsewhere:

- VQAv2 test-dev -> `[{"question_id", "answer"}]` over the FULL test2015 question list, a question without
  an answer uploaded as '' and every other answer put through the EvalAI answer processor (§3.1);
- VizWiz test -> `[{"image", "answer"}]`, EvalAI-processed; every question must have an answer (§6);
- MMBench -> .xlsx: the TSV minus `hint, category, source, image, comment, l2-category`, with `prediction`
  inserted as the 7th column (§11).

Project behaviour: answer lines that are not JSON objects with `question_id` and `text` are counted and
skipped (the VQAv2/VizWiz converters do this for unparsable lines; the MMBench one crashes), and answers are
matched to questions by `str(question_id)`, which equals the converters' match on well-formed files.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imp_data.core.errors import ImpDataError
from imp_data.core.io import write_text_atomic
from imp_data.eval.benchmarks import EvalItem
from imp_data.eval.metrics import normalize_evalai_answer
from imp_data.eval.published import PANDAS_NA, read_jsonl, read_tsv_rows
from imp_data.eval.xlsx import write_xlsx

MMBENCH_DROPPED = ("hint", "category", "source", "image", "comment", "l2-category")
_SHORTUUID = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_NAMESPACE = uuid.UUID("6f1c1c1e-5b1a-4c5e-9d0e-8a4f3c2b1a00")


# ---- answer files -----------------------------------------------------------------------------------------


def answer_id(*parts) -> str:
    """A 22-character id in shortuuid's alphabet, like LLaVA's `shortuuid.uuid()`, but derived from `parts`
    so the same run writes the same bytes.

    Example:
        >>> len(answer_id("imp", "pope", 1)), answer_id("imp", "pope", 1) == answer_id("imp", "pope", 1)
        (22, True)
    """
    number, out = uuid.uuid5(_NAMESPACE, "/".join(map(str, parts))).int, ""
    while number:
        number, digit = divmod(number, len(_SHORTUUID))
        out += _SHORTUUID[digit]
    return (out + _SHORTUUID[0] * 22)[:22][::-1]


def answer_line(item: EvalItem, text: str, model_id: str) -> dict:
    """One answer line as the benchmark's LLaVA generation module writes it (docs/eval.md §2.4)."""
    qid = item.question_id if item.question_id is not None else item.qid
    prompt = item.logged_prompt if item.logged_prompt is not None else item.prompt.removeprefix("<image>\n")
    aid = answer_id(model_id, item.benchmark, item.qid)
    if item.benchmark == "mmbench":
        return {"question_id": qid, "round_id": 0, "prompt": prompt, "text": text, "options": item.meta["options"],
                "option_char": item.meta["option_char"], "answer_id": aid, "model_id": model_id, "metadata": {}}
    return {"question_id": qid, "prompt": prompt, "text": text, "answer_id": aid, "model_id": model_id,
            "metadata": {}}


def write_answers(path: str | Path, items: Sequence[EvalItem], texts: Sequence[str], model_id: str) -> Path:
    """The answer jsonl of one split, one line per item in question-file order."""
    if len(items) != len(texts):
        raise ImpDataError(f"{path}: {len(texts)} answers for {len(items)} questions")
    return write_text_atomic(path, "".join(json.dumps(answer_line(it, t, model_id)) + "\n"
                                           for it, t in zip(items, texts)))


@dataclass
class Answers:
    """An answer file read back: text by `str(question_id)` (a later line wins, as in the converters)."""

    texts: dict[str, str]
    lines: int
    malformed: int
    first_malformed: str | None = None


def read_answers(path: str | Path) -> Answers:
    """Read an answer jsonl, counting (and skipping) lines that are not objects with question_id and text."""
    path = Path(path)
    if not path.is_file():
        raise ImpDataError(f"{path}: no answer file — run the benchmark first")
    texts, lines, malformed, first = {}, 0, 0, None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            lines += 1
            try:
                rec = json.loads(line)
                texts[str(rec["question_id"])] = str(rec["text"])
            except (json.JSONDecodeError, TypeError, KeyError) as err:
                malformed += 1
                first = first or f"{path} line {n}: {type(err).__name__} {err}"
    return Answers(texts, lines, malformed, first)


def _stats(dst: Path, answers: Answers, questions: int, missing: int) -> dict:
    return {"path": str(dst), "answer_lines": answers.lines, "malformed_lines": answers.malformed,
            "questions": questions, "missing": missing}


# ---- EvalAI uploads ---------------------------------------------------------------------------------------


def write_vqav2_upload(answers_path: str | Path, test_questions: str | Path, dst: str | Path) -> dict:
    """convert_vqav2_for_submission.py: every question of `llava_vqav2_mscoco_test2015.jsonl`, in file order.

    Returns:
        {"path", "answer_lines", "malformed_lines", "questions", "missing"}; `missing` counts the '' answers
        (test-dev answers cover only part of test2015, so most of them are expected).
    """
    answers = read_answers(answers_path)
    out, missing = [], 0
    for where, q in read_jsonl(Path(test_questions)):
        if "question_id" not in q:
            raise ImpDataError(f"{where}: missing field 'question_id'")
        text = answers.texts.get(str(q["question_id"]))
        missing += text is None
        out.append({"question_id": q["question_id"], "answer": "" if text is None else normalize_evalai_answer(text)})
    write_text_atomic(dst, json.dumps(out))
    return _stats(Path(dst), answers, len(out), missing)


def write_vizwiz_upload(answers_path: str | Path, questions: str | Path, dst: str | Path) -> dict:
    """convert_vizwiz_for_submission.py: `[{"image", "answer"}]` over `llava_test.jsonl`, in file order.

    Raises:
        ImpDataError: a question has no answer (the converter asserts), naming the first few.
    """
    answers = read_answers(answers_path)
    rows = read_jsonl(Path(questions))
    absent = [f"{q.get('question_id')!r} ({where})" for where, q in rows
              if str(q.get("question_id")) not in answers.texts]
    if absent:
        raise ImpDataError(f"{answers_path}: no answer for {len(absent)} VizWiz question(s), e.g. {absent[:3]} — "
                           "the server needs every test question answered")
    out = []
    for where, q in rows:
        if "image" not in q:
            raise ImpDataError(f"{where}: missing field 'image'")
        out.append({"image": q["image"], "answer": normalize_evalai_answer(answers.texts[str(q["question_id"])])})
    write_text_atomic(dst, json.dumps(out))
    return _stats(Path(dst), answers, len(out), 0)


# ---- MMBench upload (OpenCompass server) -----------------------------------------------------------------


def _pandas_column(values: list[str]) -> list:
    """A TSV column typed as pandas.read_table would: NaN strings -> None, then all-int -> int (float if any
    value is missing, as pandas' int columns with NaN become float64), all-numeric -> float, else str."""
    cells = [None if v in PANDAS_NA else v for v in values]
    present = [v for v in cells if v is not None]
    if present and all(re.fullmatch(r"[+-]?\d+", v) for v in present):
        return [None if v is None else (int(v) if len(present) == len(cells) else float(v)) for v in cells]
    try:
        return [None if v is None else float(v) for v in cells] if present else cells
    except ValueError:
        return cells


def write_mmbench_upload(answers_path: str | Path, tsv: str | Path, dst: str | Path) -> dict:
    """convert_mmbench_for_submission.py: the TSV's rows with their predictions, as an .xlsx for the server.

    Columns: the TSV's minus `MMBENCH_DROPPED` (those present), `prediction` inserted at position 6; a row
    without an answer keeps an empty prediction. Rows are matched by `index` == `question_id`.
    """
    answers = read_answers(answers_path)
    tsv = Path(tsv)
    table = list(read_tsv_rows(tsv))
    if not table or "index" not in table[0]:
        raise ImpDataError(f"{tsv}: no header with an 'index' column")
    header, body = table[0], table[1:]
    short = [n + 2 for n, row in enumerate(body) if len(row) != len(header)]
    if short:
        raise ImpDataError(f"{tsv} line {short[0]}: {len(table[short[0] - 1])} fields, header has {len(header)}")
    keep = [c for c, name in enumerate(header) if name not in MMBENCH_DROPPED]
    columns = [_pandas_column([row[c] for row in body]) for c in keep]
    names = [header[c] for c in keep]
    where = min(6, len(names))
    rows, missing = [], 0
    for r in range(len(body)):
        values = [col[r] for col in columns]
        text = answers.texts.get(body[r][header.index("index")].strip())
        missing += text is None
        rows.append(values[:where] + [text] + values[where:])
    write_xlsx(dst, names[:where] + ["prediction"] + names[where:], rows)
    return _stats(Path(dst), answers, len(rows), missing)
