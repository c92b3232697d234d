"""InfographicVQA (`infographicVQA_train_v1.0.json`, RRC ch. 17), docs/sources.md §7.

Same `{"data": [...]}` shape as DocVQA, but the image is `image_local_name` (a bare `NNNNN.jpeg`). Some
code spells the file `infographicsVQA_…`, so the default file is the glob `infographic*VQA_train_v1.0.json`
(matches either spelling; name the file in the recipe's `files` to pin one). `answer_type` (a list per
question: single span, multi-span, question span, non-extractive) is kept per question in meta.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from imp_data.core.source_options import VQAOptions
from imp_data.sources.base import Adapter, Record
from imp_data.sources.docvqa import read_rrc_items
from imp_data.sources.vqa import to_records


class InfographicVQAAdapter(Adapter):
    name = "infographicvqa"
    description = "InfographicVQA question answering (train split)"
    default_files = ["infographic*VQA_train_v1.0.json"]
    Options = VQAOptions

    def read(self, root: Path, files: list[str], options: VQAOptions) -> Iterator[Record]:
        items = read_rrc_items(root, files, "image_local_name", options.answer_choice,
                               ("data_split", "ocr_output_file"), "answer_type")
        yield from to_records(items, options, {"answer_types": pa.list_(pa.string())})
