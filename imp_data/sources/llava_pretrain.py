"""LLaVA-Pretrain LCS-558K (`blip_laion_cc_sbu_558k.json`, HF liuhaotian/LLaVA-Pretrain), docs/sources.md §3.

9-digit string ids (leading zeros kept), images `NNNNN/NNNNNNNNN.jpg` inside `images.zip`, and the
prompt puts `<image>` at the END (`"Render a clear and concise summary of the photo.\\n<image>"`). Stage 1
uses the `plain` template, which discards the human text anyway (docs/training.md §3.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imp_data.core.source_options import NoOptions
from imp_data.sources.base import Adapter, Record
from imp_data.sources.llava_format import read_llava_files


class LLaVAPretrainAdapter(Adapter):
    name = "llava_pretrain"
    description = "LLaVA LCS-558K BLIP captions (stage 1)"
    default_files = ["blip_laion_cc_sbu_558k.json"]
    Options = NoOptions

    def read(self, root: Path, files: list[str], options: NoOptions) -> Iterator[Record]:
        yield from read_llava_files(root, files)
