"""DVQA bar-chart QA (`train_qa.json`, GitHub kushalkafle/DVQA_dataset via Google Drive), docs/sources.md §4.

The real keys differ from the README: `question, question_id (int), template_id, answer, image,
answer_bbox` (no `question_type`, `answer_bbox` not `bbox_answer`). Images are `bar_train_XXXXXXXX.png`
in one flat folder, ~12 questions each, so records are grouped per image by default (id = image name,
as LLaVA-NeXT-Data's DVQA records). `answer_bbox` is dropped: it locates the answer in the chart, which
a conversation cannot use.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from imp_data.core.source_options import VQAOptions
from imp_data.sources.base import Adapter, Problem, Record
from imp_data.sources.vqa import QA, iter_questions, to_records

FIELDS = {"question": "question", "image": "image", "answer": "answer"}


class DVQAAdapter(Adapter):
    name = "dvqa"
    description = "DVQA synthetic bar-chart question answering"
    default_files = ["train_qa.json"]  # val_easy/val_hard are the evaluation splits
    Options = VQAOptions

    def _items(self, root: Path, files: list[str]) -> Iterator[QA | Problem]:
        for item in iter_questions(root, files, "question_id", FIELDS):
            if isinstance(item, Problem):
                yield item
                continue
            name, where, qid, rec, values = item
            question, image, answer = values
            template = rec.get("template_id")
            yield QA(qid, image, question, answer, {"split_file": Path(name).stem}, where,
                     (template if isinstance(template, str) else None,))

    def read(self, root: Path, files: list[str], options: VQAOptions) -> Iterator[Record]:
        yield from to_records(self._items(root, files), options, {"template_ids": pa.string()})
