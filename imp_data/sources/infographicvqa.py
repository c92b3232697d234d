"""InfographicVQA (`infographicVQA_train_v1.0.json`, RRC ch. 17), SOURCES §7.

Same `{"data": [...]}` shape as DocVQA, but the image is `image_local_name` (a bare `NNNNN.jpeg`), and
some code spells the file `infographicsVQA_…` — name the file in the recipe's `files` if yours differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imp_data.sources.base import Adapter, Record
from imp_data.sources.docvqa import rrc_items
from imp_data.sources.vqa import VQAOptions, to_records


class InfographicVQAAdapter(Adapter):
    name = "infographicvqa"
    description = "InfographicVQA question answering (train split)"
    default_files = ["infographicVQA_train_v1.0.json"]
    Options = VQAOptions

    def read(self, root: Path, files: list[str], options: VQAOptions) -> Iterator[Record]:
        items = rrc_items(root, files, "image_local_name", options.answer_choice,
                          ("answer_type", "data_split", "ocr_output_file"))
        yield from to_records(items, options)
