"""ALLaVA-4V (HF FreedomIntelligence/ALLaVA-4V), docs/sources.md §11: records are LLaVA format already; LAION
records carry `original_caption` and `url`, kept in `meta` (they are how MGM repaired renamed images).
Default files are the Instruct LAION + VFLAN json of the ~708K release; Caption files share the same
images, so sampling both would duplicate images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imp_data.core.source_options import NoOptions
from imp_data.sources.base import Adapter, Record
from imp_data.sources.llava_format import read_llava_files


class ALLaVAAdapter(Adapter):
    name = "allava"
    description = "ALLaVA-4V instruction data (LAION + VFLAN)"
    default_files = ["allava_laion/ALLaVA-Instruct-LAION-4V.json", "allava_vflan/ALLaVA-Instruct-VFLAN-4V.json"]
    Options = NoOptions

    def read(self, root: Path, files: list[str], options: NoOptions) -> Iterator[Record]:
        yield from read_llava_files(root, files)
