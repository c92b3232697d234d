"""Question-answer sources (DVQA, ChartQA, DocVQA, InfographicVQA, AI2D) as LLaVA conversations.

The paper counts these sources per image (docs/sources.md §13.2), so by default all questions about one image
become one multi-turn record — format suffix on the first question only, `<image>` leading the first
turn, exactly as LLaVA-1.5's merged GQA/OCR-VQA records. A grouped record's `source_id` is its image path
(the image is what the paper counts); ungrouped records keep the native question id. Question ids and
other per-question extras become aligned lists in `meta`. Multi-answer fields use a documented rule.

Design choice: grouping buffers questions as compact Arrow columns and lets polars group them (first-seen
image order), because DVQA's 2.3M questions as Python objects would cost gigabytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from imp_data.core.source_options import VQAOptions
from imp_data.sources.base import Candidate, Problem, Record, native_id, qa_conversation
from imp_data.sources.jsoncaps import BadRecord
from imp_data.sources.jsonstream import iter_json_array

_CHUNK = 200_000  # questions per Arrow chunk while grouping


def choose_answer(answers: list[Any], rule: str) -> str | None:
    """Deterministic choice among acceptable answers (non-blank strings only); None when there is none.

    Example:
        >>> choose_answer(["a", "b", "b"], "most_common"), choose_answer(["", "a", "b"], "first")
        ('b', 'a')
    """
    answers = [a for a in answers if isinstance(a, str) and a.strip()]
    if not answers:
        return None
    if rule == "first":
        return answers[0]
    counts = Counter(answers)
    best = max(counts.values())
    return next(a for a in answers if counts[a] == best)


class QA:
    """One question about one image, before conversion (kept small: there are millions).

    `meta` holds per-image extras (taken from an image's first question); `extra` holds per-question
    values aligned with the `per_question` names given to `to_records`.
    """

    __slots__ = ("qid", "image", "question", "answer", "meta", "where", "extra")

    def __init__(self, qid: str, image: str, question: str, answer: str, meta: dict, where: str,
                 extra: tuple = ()):
        self.qid, self.image, self.question, self.answer = qid, image, question, answer
        self.meta, self.where, self.extra = meta, where, extra


def iter_objects(root: Path, files: list[str], key: str | None = None) -> Iterator[tuple[str, int, Any]]:
    """(file name, record number, record) for every element of every file's JSON list, streamed."""
    for name in files:
        for n, rec in enumerate(iter_json_array(root / name, key=key)):
            yield name, n, rec


def read_fields(rec: Any, fields: dict[str, str], sid: str, where: str) -> list[str] | Problem:
    """The values of required text fields, in order, or the Problem of the first bad one.

    Args:
        rec: the native record.
        fields: key -> role ('question', 'answer', 'image', 'id'); blank text is the reason `empty_<role>`.
        sid: names the record in a Problem.
        where: "<file> record <n>", for the Problem's detail.

    Int answers and ids become decimal strings (the native-id rule; some re-exports store numeric
    answers as ints); a key that is absent or null is `missing_field`, any other type `bad_type`.

    Example:
        >>> read_fields({"q": "Why?", "a": 4}, {"q": "question", "a": "answer"}, "7", "f.json record 0")
        ['Why?', '4']
        >>> read_fields({"q": "Why?", "a": " "}, {"q": "question", "a": "answer"}, "7", "f.json record 0").reason
        'empty_answer'
    """
    if not isinstance(rec, dict):
        if isinstance(rec, BadRecord):  # refused by the reader (too large, too deep, lone surrogate...)
            return Problem(sid, rec.reason, f"{where}: {rec.detail}")
        return Problem(sid, "bad_type", f"{where}: record is a {type(rec).__name__}, not an object")
    values = []
    for key, role in fields.items():
        value = rec.get(key)
        if value is None:
            return Problem(sid, "missing_field", f"{where}: no {key!r}")
        if role in ("answer", "id") and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return Problem(sid, "bad_type", f"{where}: {key!r} is a {type(value).__name__}, not a string")
        if not value.strip():
            return Problem(sid, f"empty_{role}", f"{where}: {key!r} is blank")
        values.append(value)
    return values


def question_id(rec: Any, key: str, fallback: str, where: str) -> str | Problem:
    """The record's native question id as a string, or a Problem (`missing_field` / `bad_type`)."""
    if not isinstance(rec, dict):
        if isinstance(rec, BadRecord):
            return Problem(fallback, rec.reason, f"{where}: {rec.detail}")
        return Problem(fallback, "bad_type", f"{where}: record is a {type(rec).__name__}, not an object")
    value = rec.get(key)
    qid = native_id(value)
    if qid is not None:
        return qid
    if value is None or value == "":
        return Problem(fallback, "missing_field", f"{where}: no {key!r}")
    return Problem(fallback, "bad_type", f"{where}: {key!r} is a {type(value).__name__}")


def iter_questions(root: Path, files: list[str], id_key: str, fields: dict[str, str],
                   key: str | None = None) -> Iterator[tuple[str, str, str, dict, list[str]] | Problem]:
    """(file name, where, question id, record, required field values) per question record, or its Problem.

    The shared front of the per-question adapters (DVQA, DocVQA, InfographicVQA): stream the files, read
    the native id (`id_key`), then the required text `fields` (see `read_fields`).
    """
    for name, n, rec in iter_objects(root, files, key=key):
        where = f"{name} record {n}"
        qid = question_id(rec, id_key, f"@{name}:{n}", where)
        values = qid if isinstance(qid, Problem) else read_fields(rec, fields, qid, where)
        yield values if isinstance(values, Problem) else (name, where, qid, rec, values)


def str_list(value: Any) -> list[str] | None:
    """`value` if it is a list of strings (a per-question meta field), else None."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def to_records(items: Iterable[QA | Problem], options: VQAOptions,
               per_question: dict[str, pa.DataType] | None = None) -> Iterator[Record]:
    """Turn QAs into Candidates: grouped per image (first-seen image order) or one per question.

    Args:
        items: QAs and Problems in file order; Problems pass straight through.
        options: grouping, prompt suffix.
        per_question: meta names (plural, e.g. `template_ids`) and Arrow types of `QA.extra`'s values;
            each record's meta gets one aligned list per name, beside `question_ids` (left out when
            every value is missing).
    """
    extras = list((per_question or {}).items())
    names = [name for name, _ in extras]
    if not options.group_by_image:
        for qa in items:
            if isinstance(qa, Problem):
                yield qa
                continue
            conv = qa_conversation([(qa.question, qa.answer)], with_image=True, suffix=options.prompt)
            meta = {**qa.meta, "question_ids": [qa.qid], **_lists(names, [[v] for v in qa.extra])}
            yield Candidate(qa.qid, qa.image, conv, meta, qa.where)
        return
    base = ["qid", "image", "question", "answer"]
    schema = pa.schema([(k, pa.string()) for k in base] + [(f"x{i}", t) for i, (_, t) in enumerate(extras)])
    columns: list[list] = [[] for _ in schema]
    wheres: list[str] = []  # of the chunk's questions, for a chunk that cannot be built
    chunks: list[pa.Table] = []
    first: dict[str, tuple[dict, str]] = {}  # image -> (meta, where) of its first question
    for qa in items:
        if isinstance(qa, Problem):
            yield qa
            continue
        if qa.image not in first:
            first[qa.image] = (qa.meta, qa.where)
        for column, value in zip(columns, (qa.qid, qa.image, qa.question, qa.answer, *qa.extra)):
            column.append(value)
        wheres.append(qa.where)
        if len(columns[0]) >= _CHUNK:
            yield from _chunk(columns, wheres, schema, chunks)
            columns, wheres = [[] for _ in schema], []
    if columns[0] or not chunks:
        yield from _chunk(columns, wheres, schema, chunks)
    table = pl.from_arrow(pa.concat_tables(chunks))
    del chunks
    grouped = table.group_by("image", maintain_order=True).agg(pl.exclude("image"))
    del table
    for image, qids, questions, answers, *values in grouped.iter_rows():
        conv = qa_conversation(list(zip(questions, answers)), with_image=True, suffix=options.prompt)
        meta, where = first[image]
        yield Candidate(image, image, conv, {**meta, "question_ids": qids, **_lists(names, values)}, where)


def _chunk(columns: list[list], wheres: list[str], schema: pa.Schema, chunks: list[pa.Table]) -> Iterator[Problem]:
    """Append the questions as an Arrow chunk; a question whose text Arrow cannot take (a lone surrogate,
    which no UTF-8 writer accepts) is left out as a `bad_unicode` Problem instead of failing the file."""
    try:
        chunks.append(pa.table(columns, schema=schema))
        return
    except UnicodeEncodeError:
        pass
    bad = {i for i, row in enumerate(zip(*columns)) if not all(map(_encodable, row))}
    for i in sorted(bad):
        yield Problem(columns[0][i].encode("utf-8", "backslashreplace").decode(), "bad_unicode",
                      f"{wheres[i]}: text holds a lone surrogate (not encodable as UTF-8)")
    chunks.append(pa.table([[v for i, v in enumerate(c) if i not in bad] for c in columns], schema=schema))


def _encodable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return all(map(_encodable, value)) if isinstance(value, list) else True


def _lists(names: list[str], values: list[list]) -> dict[str, list]:
    """Per-question meta lists, leaving out a name whose values are all missing."""
    return {name: v for name, v in zip(names, values) if any(x is not None for x in v)}
