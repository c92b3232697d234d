"""ShareGPT-4V, the GPT-4V caption file (`sharegpt4v_instruct_gpt4-vision_cap100k.json`, HF
Lin-Chen/ShareGPT4V), docs/sources.md §9: LLaVA conversations whose images span seven roots (`coco/train2017`,
`sam/images`, `llava/llava_pretrain/images`, `wikiart/images`, `share_textvqa/images`, `web-celebrity/
images`, `web-landmark/images`); the recipe's image roots map each prefix to its zip or folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imp_data.core.source_options import NoOptions
from imp_data.sources.base import Adapter, Record
from imp_data.sources.llava_format import read_llava_files


class ShareGPT4VAdapter(Adapter):
    name = "sharegpt4v"
    description = "ShareGPT-4V GPT-4V captions (cap100k)"
    default_files = ["sharegpt4v_instruct_gpt4-vision_cap100k.json"]
    Options = NoOptions

    def read(self, root: Path, files: list[str], options: NoOptions) -> Iterator[Record]:
        yield from read_llava_files(root, files)
