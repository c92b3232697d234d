"""Resources: where the data root is, and how fetching behaves. One environment variable per setting,
bound through `dg.EnvVar` by `resources_from_env` (the launchpad shows which variable a value came from,
and a run can override it):

    IMP_DATA_ROOT      DataRoot.path        the data root: a directory or an fsspec URL (default: data)
    IMP_DATA_WORKERS   DataRoot.workers     worker processes per stage (default 1)
    HF_ENDPOINT        FetchSettings.hf_endpoint
    IMP_DATA_CACHE     where URL roots' working copies live ($IMP_DATA_CACHE/<root>, default
                       ~/.cache/imp-data), read by imp_data.storage.dataroot exactly as the CLI reads it

`DataRoot.cache` names one working copy directly (the CLI's `--cache`); it has no variable of its own.
IMP_DATA_CACHE_DIR, its old variable (easily confused with IMP_DATA_CACHE), still sets it, with a
deprecation warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from imp_data.core.context import BuildContext
from imp_data.core.layout import normalized_unit
from imp_data.core.recipe import Recipe
from imp_data.storage.dataroot import RemoteRoot, open_data_root


class DataRoot(dg.ConfigurableResource):
    """The data root every asset reads and writes under (docs/design.md §4 layout)."""

    path: str = "data"
    """A directory, or an fsspec URL (s3://bucket/imp): each step then pulls its inputs into `cache`."""
    cache: str = ""
    """Local working copy of a URL data root (empty: $IMP_DATA_CACHE/<root>, ~/.cache/imp-data)."""
    workers: int = 1

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[DataRoot]:
        """For as long as a run (in process) or a step (one process each) uses the data root, hold its
        build lock shared: other Dagster runs may share it, `imp-data build` is refused meanwhile."""
        from imp_data.storage.buildlock import share_build_lock

        local, _ = open_data_root(self.path, self.cache or None)
        run_id = getattr(context, "run_id", None) or "?"
        with share_build_lock(local, f"dagster run {run_id}"):
            yield self

    def context(self, recipe: Recipe, fetch: FetchSettings | None = None) -> BuildContext:
        """The build context of one step; refused (one line naming the holder) while `imp-data build` runs
        on the same data root."""
        from imp_data.storage.buildlock import refuse_if_building

        local, remote = open_data_root(self.path, self.cache or None)
        refuse_if_building(local)
        return BuildContext(recipe=recipe, data_root=local, workers=self.workers, progress=False,
                            download=fetch.download_config() if fetch else None, remote=remote)

    def open(self) -> tuple[Path, RemoteRoot | None]:
        """(the directory the stages work in: the data root itself or a URL root's cache, the remote root)."""
        return open_data_root(self.path, self.cache or None)

    def context_pulled(self, recipe: Recipe, mix: str | None = None, *, source: str | None = None,
                       shards: bool = False) -> BuildContext:
        """A context whose cache holds what a check reads: the source's normalized table, or the mix's
        tables (and with `shards`, its tars). With a local data root nothing moves."""
        from imp_data.storage import sync as stage_sync

        ctx = self.context(recipe)
        if ctx.remote is not None:
            if source is not None:
                ctx.remote.pull(normalized_unit(source))
            if mix is not None:
                stage_sync.pull_mix_tables(ctx, mix)
                if shards:
                    stage_sync.pull_built_mix(ctx.remote, ctx.layout, mix)
        return ctx


class FetchSettings(dg.ConfigurableResource):
    """Fetch behaviour: Hub endpoint (a mirror or a loopback test server), timeouts, URL concurrency."""

    hf_endpoint: str = ""
    timeout_s: float = 30.0
    max_concurrency: int = 16

    def apply(self) -> None:
        if self.hf_endpoint:
            os.environ["HF_ENDPOINT"] = self.hf_endpoint

    def download_config(self):
        """The URL downloader's settings (LAION-GPT-V) from these resource values."""
        from imp_data.fetch.http import DownloadConfig
        from imp_data.fetch.transport import Timeouts

        return DownloadConfig(concurrency=self.max_concurrency,
                              timeouts=Timeouts(connect=self.timeout_s / 3, read=self.timeout_s))


def _env(name: str, kind=dg.EnvVar) -> dg.EnvVar | None:
    """`dg.EnvVar(name)` when the variable is set, else None (the field's default applies)."""
    return kind(name) if os.environ.get(name) else None


def resources_from_env(data_root: str | None = None) -> dict[str, dg.ConfigurableResource]:
    """The code location's resources, each setting bound to its one environment variable when set;
    `data_root` (tests, the bench) overrides IMP_DATA_ROOT."""
    root = {"path": data_root or _env("IMP_DATA_ROOT"), "workers": _env("IMP_DATA_WORKERS", dg.EnvVar.int),
            "cache": _env("IMP_DATA_CACHE_DIR")}
    if root["cache"] is not None:
        warnings.warn("IMP_DATA_CACHE_DIR is deprecated: set the data_root resource's `cache` in the launchpad, "
                      "or IMP_DATA_CACHE for where URL roots' working copies live", DeprecationWarning, stacklevel=2)
    fetch = {"hf_endpoint": _env("HF_ENDPOINT")}
    return {"data_root": DataRoot(**{k: v for k, v in root.items() if v is not None}),
            "fetch": FetchSettings(**{k: v for k, v in fetch.items() if v is not None})}
