"""ChartQA (`ChartQA Dataset/train/train_{human,augmented}.json`, GitHub vis-nlp/ChartQA), docs/sources.md §5.

A top-level list of `{imgname, query, label}`; `label` is a string whose artefacts are kept as published
(`"44362"` Excel date serials, `"[63, 26]"`), because "fixing" them would be guessing. Images are
`png/<imgname>` beside the json. There are no native question ids, so a question's id is
`<file stem>/<record number>` (`train_human/0`): stable for a pinned file and unique across files.
Human and augmented questions are different files; both are read by default (the recipe says why).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imp_data.core.source_options import VQAOptions
from imp_data.sources.base import Adapter, Problem, Record
from imp_data.sources.vqa import QA, choose_answer, iter_objects, read_fields, to_records

FIELDS = {"imgname": "image", "query": "question"}


class ChartQAAdapter(Adapter):
    name = "chartqa"
    description = "ChartQA human + augmented chart question answering"
    default_files = ["ChartQA Dataset/train/train_human.json", "ChartQA Dataset/train/train_augmented.json"]
    Options = VQAOptions

    def _items(self, root: Path, files: list[str], rule: str) -> Iterator[QA | Problem]:
        for name, n, rec in iter_objects(root, files):
            stem = Path(name).stem
            where, qid = f"{name} record {n}", f"{stem}/{n}"
            values = read_fields(rec, FIELDS, qid, where)
            if isinstance(values, Problem):
                yield values
                continue
            image, query = values
            label = rec.get("label")
            if isinstance(label, list):  # the HF M4 export stores a list of labels: the documented rule picks
                label = choose_answer(label, rule) or ""
            label = read_fields({"label": label}, {"label": "answer"}, qid, where)
            if isinstance(label, Problem):
                yield label
                continue
            yield QA(qid, image, query, label[0], {"split_file": stem}, where)

    def read(self, root: Path, files: list[str], options: VQAOptions) -> Iterator[Record]:
        yield from to_records(self._items(root, files, options.answer_choice), options)
