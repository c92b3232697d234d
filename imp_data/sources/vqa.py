"""Question-answer sources (DVQA, ChartQA, DocVQA, InfographicVQA, AI2D) as LLaVA conversations.

The paper counts these sources per image (SOURCES §13.2), so by default all questions about one image
become one multi-turn record — format suffix on the first question only, `<image>` leading the first
turn, exactly as LLaVA-1.5's merged GQA/OCR-VQA records. The grouped record's id is the image path;
ungrouped records keep the native question id. Multi-answer fields are resolved by a documented rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Literal

import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from imp_data.sources.base import SHORT_ANSWER_PROMPT, Candidate, Problem, Record, qa_conversation


class VQAOptions(BaseModel):
    """Conversion choices the paper leaves open, with the defaults LLaVA-1.5 uses for VQA data."""

    model_config = ConfigDict(extra="forbid")

    group_by_image: bool = Field(
        default=True, description="One multi-turn record per image (the paper's counts are per image).")
    prompt: str | None = Field(
        default=SHORT_ANSWER_PROMPT,
        description="Response-format suffix on the first question (LLaVA-1.5 / lmms-eval short-answer prompt); "
        "null for none.")
    answer_choice: Literal["first", "most_common"] = Field(
        default="first",
        description="Rule for multi-answer fields: 'first' listed answer, or the 'most_common' (ties -> first).")


def choose_answer(answers: list[str], rule: str) -> str | None:
    """Deterministic choice among acceptable answers; None when there is none.

    Example:
        >>> choose_answer(["a", "b", "b"], "most_common"), choose_answer(["a", "b", "b"], "first")
        ('b', 'a')
    """
    answers = [a for a in answers if isinstance(a, str)]
    if not answers:
        return None
    if rule == "first":
        return answers[0]
    counts = Counter(answers)
    best = max(counts.values())
    return next(a for a in answers if counts[a] == best)


class QA:
    """One question about one image, before conversion (kept small: there are millions)."""

    __slots__ = ("qid", "image", "question", "answer", "meta", "where")

    def __init__(self, qid: str, image: str, question: str, answer: str, meta: dict, where: str):
        self.qid, self.image, self.question, self.answer, self.meta, self.where = qid, image, question, answer, meta, where


def to_records(items: Iterable[QA | Problem], options: VQAOptions) -> Iterator[Record]:
    """Turn QAs into Candidates: grouped per image (first-seen image order) or one per question."""
    if not options.group_by_image:
        for qa in items:
            if isinstance(qa, Problem):
                yield qa
                continue
            conv = qa_conversation([(qa.question, qa.answer)], with_image=True, suffix=options.prompt)
            yield Candidate(qa.qid, qa.image, conv, {**qa.meta, "question_ids": [qa.qid]}, qa.where)
        return
    # Grouping millions of questions (DVQA: 2.3M) in Python objects costs GBs; buffer them as compact
    # Arrow columns instead and let polars group them, keeping first-seen image order.
    columns: dict[str, list] = {"qid": [], "image": [], "question": [], "answer": []}
    chunks: list[pa.Table] = []
    first: dict[str, tuple[dict, str]] = {}  # image -> (meta, where) of its first question
    for qa in items:
        if isinstance(qa, Problem):
            yield qa
            continue
        if qa.image not in first:
            first[qa.image] = ({k: v for k, v in qa.meta.items() if k != "question_id"}, qa.where)
        for key, value in (("qid", qa.qid), ("image", qa.image), ("question", qa.question), ("answer", qa.answer)):
            columns[key].append(value)
        if len(columns["qid"]) >= _CHUNK:
            chunks.append(pa.table(columns))
            columns = {k: [] for k in columns}
    if columns["qid"] or not chunks:
        chunks.append(pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}))
    grouped = pl.from_arrow(pa.concat_tables(chunks)).group_by("image", maintain_order=True).agg("qid", "question", "answer")
    del chunks
    for image, qids, questions, answers in grouped.iter_rows():
        conv = qa_conversation(list(zip(questions, answers)), with_image=True, suffix=options.prompt)
        meta, where = first[image]
        yield Candidate(image, image, conv, {**meta, "question_ids": qids}, where)


_CHUNK = 200_000


def text_field(rec: dict, key: str) -> str | None:
    value = rec.get(key)
    return value if isinstance(value, str) else None
