"""ChartQA (`ChartQA Dataset/train/train_{human,augmented}.json`, vis-nlp/ChartQA), SOURCES §5.

Top-level list of `{imgname, query, label}`; `label` is a string with artefacts kept as published
(`"44362"` Excel date serials, `"[63, 26]"`); images are `png/<imgname>` beside the json. Human and
augmented questions are different files; both are read by default (see the recipe comment).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imp_data.sources.base import Adapter, Problem, Record
from imp_data.sources.jsonstream import iter_json_array
from imp_data.sources.vqa import QA, VQAOptions, text_field, to_records


class ChartQAAdapter(Adapter):
    name = "chartqa"
    description = "ChartQA human + augmented chart question answering"
    default_files = ["ChartQA Dataset/train/train_human.json", "ChartQA Dataset/train/train_augmented.json"]
    Options = VQAOptions

    def _items(self, root: Path, files: list[str]) -> Iterator[QA | Problem]:
        for name in files:
            kind = "augmented" if "augmented" in name else "human"
            for n, rec in enumerate(iter_json_array(root / name)):
                where = f"{name} record {n}"
                qid = f"{kind}/{n}"
                if not isinstance(rec, dict):
                    yield Problem(qid, "bad_type", f"{where}: not an object")
                    continue
                image, query, label = text_field(rec, "imgname"), text_field(rec, "query"), rec.get("label")
                if isinstance(label, list):  # the HF M4 copy stores a list of labels
                    label = label[0] if label else None
                if isinstance(label, (int, float)) and not isinstance(label, bool):
                    label = str(label)
                missing = [k for k, v in (("imgname", image), ("query", query), ("label", label)) if v is None]
                if missing:
                    yield Problem(qid, "missing_field", f"{where}: missing or non-string {', '.join(missing)}")
                    continue
                if not label.strip():
                    yield Problem(qid, "empty_answer", f"{where}: empty label")
                    continue
                yield QA(qid, image, query, label, {"split_file": kind}, where)

    def read(self, root: Path, files: list[str], options: VQAOptions) -> Iterator[Record]:
        yield from to_records(self._items(root, files), options)
