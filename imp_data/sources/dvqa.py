"""DVQA bar-chart QA (`train_qa.json`, kushalkafle/DVQA_dataset), SOURCES §4.

Real keys differ from the README: `question, question_id (int), template_id, answer, image,
answer_bbox`. Images are `bar_train_XXXXXXXX.png` in one flat folder; ~12 questions per image.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imp_data.sources.base import Adapter, Problem, Record, native_id
from imp_data.sources.jsonstream import iter_json_array
from imp_data.sources.vqa import QA, VQAOptions, text_field, to_records


class DVQAAdapter(Adapter):
    name = "dvqa"
    description = "DVQA synthetic bar-chart question answering"
    default_files = ["train_qa.json"]
    Options = VQAOptions

    def _items(self, root: Path, files: list[str]) -> Iterator[QA | Problem]:
        for name in files:
            for n, rec in enumerate(iter_json_array(root / name)):
                where = f"{name} record {n}"
                if not isinstance(rec, dict):
                    yield Problem(f"@{name}:{n}", "bad_type", f"{where}: not an object")
                    continue
                qid = native_id(rec.get("question_id")) or f"@{name}:{n}"
                question, image = text_field(rec, "question"), text_field(rec, "image")
                answer = rec.get("answer")
                if isinstance(answer, (int, float)) and not isinstance(answer, bool):
                    answer = str(answer)
                missing = [k for k, v in (("question", question), ("image", image), ("answer", answer)) if v is None]
                if missing:
                    yield Problem(qid, "missing_field", f"{where}: missing or non-string {', '.join(missing)}")
                    continue
                if not answer.strip():
                    yield Problem(qid, "empty_answer", f"{where}: empty answer")
                    continue
                yield QA(qid, image, question, answer, {"template_id": rec.get("template_id"), "split_file": name},
                         where)

    def read(self, root: Path, files: list[str], options: VQAOptions) -> Iterator[Record]:
        yield from to_records(self._items(root, files), options)
