"""LLaVA-1.5 mix665k (`llava_v1_5_mix665k.json`, HF liuhaotian/LLaVA-Instruct-150K), docs/sources.md §2.

Pitfalls handled: ids are mixed str/int (kept as published strings), one COCO id keys several records
(the normaliser suffixes `#2`, `#3`), ShareGPT records have no `image` key (text-only), and `<image>`
may stand at the end of the prompt. TextCaps is not dropped here: that is a mix rule (`image_prefix:
textvqa/`), so the adapter stays a faithful reader. Each record's 0-based position in its file is kept
as `meta.file_index`, for drop rules that match by position (`file_positions`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imp_data.core.source_options import FILE_INDEX_ADAPTERS, LLaVA665KOptions
from imp_data.sources.base import Adapter, Record
from imp_data.sources.llava_format import read_llava_files


class LLaVA665KAdapter(Adapter):
    name = "llava_665k"
    description = "LLaVA-1.5 665K instruction mix (LLaVA conversations)"
    default_files = ["llava_v1_5_mix665k.json"]
    Options = LLaVA665KOptions
    version = "2"  # 2: meta.file_index
    # Imp's train.py deletes two records of the published file by list index (manifests/imp_1m.yaml,
    # rule imp_removals); normalize rejects shift `order`, so the position is kept as read. The recipe
    # allows `file_positions` rules only on adapters listed in FILE_INDEX_ADAPTERS.

    def read(self, root: Path, files: list[str], options: LLaVA665KOptions) -> Iterator[Record]:
        keep_index = self.name in FILE_INDEX_ADAPTERS
        yield from read_llava_files(root, files, move_token=options.move_image_token_first, keep_index=keep_index)
