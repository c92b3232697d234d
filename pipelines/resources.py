"""Resources: where the data root is, and how fetching behaves. Set from the environment by default
(IMP_DATA_ROOT, IMP_DATA_WORKERS, HF_ENDPOINT), configurable per run in the launchpad."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from imp_data.build import BuildContext
from imp_data.recipe import Recipe


class DataRoot(dg.ConfigurableResource):
    """The data root every asset reads and writes under (DESIGN §4 layout)."""

    path: str = os.environ.get("IMP_DATA_ROOT", "data")
    workers: int = int(os.environ.get("IMP_DATA_WORKERS", "1"))

    def context(self, recipe: Recipe, fetch: "FetchSettings | None" = None) -> BuildContext:
        return BuildContext(recipe=recipe, data_root=Path(self.path).resolve(), workers=self.workers, progress=False,
                            download=fetch.download_config() if fetch else None)


class FetchSettings(dg.ConfigurableResource):
    """Fetch behaviour: Hub endpoint (a mirror or a loopback test server), timeouts, URL concurrency."""

    hf_endpoint: str = os.environ.get("HF_ENDPOINT", "")
    timeout_s: float = 30.0
    max_concurrency: int = 16

    def apply(self) -> None:
        if self.hf_endpoint:
            os.environ["HF_ENDPOINT"] = self.hf_endpoint

    def download_config(self):
        """The URL downloader's settings (LAION-GPT-V) from these resource values."""
        from imp_data.fetch.http import DownloadConfig
        from imp_data.fetch.transport import Timeouts

        return DownloadConfig(concurrency=self.max_concurrency, timeouts=Timeouts(connect=self.timeout_s / 3, read=self.timeout_s))
