"""DocVQA (`train/train_v1.0_withQT.json`, RRC ch. 17), SOURCES §6.

Top level is an object whose `data` list holds the questions (streamed). `answers` is a list of
acceptable answers (chosen by `answer_choice`); `image` is `documents/<ucsf_id>_<page>.png`, relative to
the split folder. The val/test splits are the benchmark and must not be trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imp_data.sources.base import Adapter, Problem, Record, native_id
from imp_data.sources.jsonstream import iter_json_array
from imp_data.sources.vqa import QA, VQAOptions, choose_answer, text_field, to_records


def rrc_items(root: Path, files: list[str], image_key: str, rule: str, extra: tuple[str, ...]) -> Iterator[QA | Problem]:
    """Questions of an RRC-style `{"data": [...]}` file (DocVQA and InfographicVQA share the shape)."""
    for name in files:
        for n, rec in enumerate(iter_json_array(root / name, key="data")):
            where = f"{name} record {n}"
            if not isinstance(rec, dict):
                yield Problem(f"@{name}:{n}", "bad_type", f"{where}: not an object")
                continue
            qid = native_id(rec.get("questionId")) or f"@{name}:{n}"
            question, image, answers = text_field(rec, "question"), text_field(rec, image_key), rec.get("answers")
            missing = [k for k, v in (("question", question), (image_key, image), ("answers", answers)) if v is None]
            if missing:
                yield Problem(qid, "missing_field", f"{where}: missing or non-string {', '.join(missing)}")
                continue
            if not isinstance(answers, list):
                yield Problem(qid, "bad_type", f"{where}: 'answers' must be a list")
                continue
            answer = choose_answer([a for a in answers if isinstance(a, str) and a.strip()], rule)
            if answer is None:
                yield Problem(qid, "empty_answer", f"{where}: no non-empty answer")
                continue
            meta = {k: rec[k] for k in extra if k in rec}
            yield QA(qid, image, question, answer, meta, where)


class DocVQAAdapter(Adapter):
    name = "docvqa"
    description = "DocVQA document question answering (train split)"
    default_files = ["train/train_v1.0_withQT.json"]
    Options = VQAOptions

    def read(self, root: Path, files: list[str], options: VQAOptions) -> Iterator[Record]:
        items = rrc_items(root, files, "image", options.answer_choice, ("docId", "question_types", "data_split"))
        yield from to_records(items, options)
