"""DocVQA (`train/train_v1.0_withQT.json`, RRC ch. 17), docs/sources.md §6.

The top level is an object whose `data` list holds the questions (streamed, other keys skipped).
`answers` lists several acceptable answers, chosen by the `answer_choice` rule; `image` is
`documents/<ucsf_id>_<page>.png`, relative to the split folder. InfographicVQA has the same shape, so
`read_rrc_items` serves both. The val/test splits are the benchmark and must not be trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from imp_data.core.source_options import VQAOptions
from imp_data.sources.base import Adapter, Problem, Record
from imp_data.sources.vqa import QA, choose_answer, iter_questions, str_list, to_records


def read_rrc_items(root: Path, files: list[str], image_key: str, rule: str, per_image: tuple[str, ...],
                   per_question: str) -> Iterator[QA | Problem]:
    """Questions of RRC `{"data": [...]}` files (DocVQA, InfographicVQA).

    Args:
        image_key: the field holding the image path (`image` / `image_local_name`).
        rule: `answer_choice` among the acceptable `answers`.
        per_image: fields copied into meta from an image's first question.
        per_question: a list-of-strings field kept per question (`question_types` / `answer_type`).
    """
    fields = {"question": "question", image_key: "image"}
    for item in iter_questions(root, files, "questionId", fields, key="data"):
        if isinstance(item, Problem):
            yield item
            continue
        name, where, qid, rec, values = item
        answers = rec.get("answers")
        if answers is None:
            yield Problem(qid, "missing_field", f"{where}: no 'answers'")
            continue
        if not isinstance(answers, list):
            yield Problem(qid, "bad_type", f"{where}: 'answers' is a {type(answers).__name__}, not a list")
            continue
        answer = choose_answer(answers, rule)
        if answer is None:
            yield Problem(qid, "empty_answer", f"{where}: no non-blank string among 'answers'")
            continue
        meta = {k: rec[k] for k in per_image if k in rec}
        yield QA(qid, values[1], values[0], answer, meta, where, (str_list(rec.get(per_question)),))


class DocVQAAdapter(Adapter):
    name = "docvqa"
    description = "DocVQA document question answering (train split)"
    default_files = ["train/train_v1.0_withQT.json"]
    Options = VQAOptions

    def read(self, root: Path, files: list[str], options: VQAOptions) -> Iterator[Record]:
        items = read_rrc_items(root, files, "image", options.answer_choice, ("docId", "data_split"), "question_types")
        yield from to_records(items, options, {"question_types": pa.list_(pa.string())})
