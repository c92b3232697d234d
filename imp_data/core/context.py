"""The build context: the runtime facts every stage reads (recipe, data root, workers, progress, remote
root), the file-hash cache and stamps each stage checks before it works, and the reuse report it fills.

Kept apart from the stages (imp_data.build) so the pieces below the orchestration can take a context
without importing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import polars as pl

from imp_data.core.errors import ImpDataError
from imp_data.core.fingerprint import FileHashes, read_stamp, stamp_holds, write_stamp
from imp_data.core.layout import Layout
from imp_data.core.recipe import Recipe, SourceSpec


class RemoteStore(Protocol):
    """What the stages use of a data root in object storage (`imp_data.storage.dataroot.RemoteRoot`):
    push and pull units of work through the local cache."""

    url: str

    def key(self, rel: str) -> str: ...
    def locked(self) -> AbstractContextManager[None]: ...
    def push(self, unit: str, files: Iterable[Path], bulk: Iterable[Path] = ()) -> dict: ...
    def pull(self, unit: str, match: Callable[[str], bool] | None = None) -> int: ...
    def pull_files(self, rels: Iterable[str], what: str = "file") -> int: ...
    def pull_tree(self, rel: str) -> int: ...


@dataclass
class BuildContext:
    """Runtime facts for a build (kept apart from the recipe): data root, parallelism, progress."""

    recipe: Recipe
    data_root: Path
    workers: int = 1
    progress: bool = True
    download: object | None = None  # imp_data.fetch.http.DownloadConfig for URL-only sources (None: defaults)
    remote: RemoteStore | None = None  # data root in object storage; data_root is then its local cache
    reuse: list[dict] = field(default_factory=list)  # per stage and subject: units redone / reused
    memo: dict = field(default_factory=dict)  # results computed once per build (benchmark image hashes)
    _hashes: FileHashes | None = None

    @property
    def layout(self) -> Layout:
        return Layout(self.data_root)

    @property
    def hashes(self) -> FileHashes:
        """Content hashes of files, cached by stat in the data root's machine-local state."""
        if self._hashes is None:
            self._hashes = FileHashes(self.layout.file_hashes())
        return self._hashes

    def sha(self, path: Path) -> str | None:
        return self.hashes.sha256(path) if path.is_file() else None

    def note(self, stage: str, subject: str, *, redone: int, reused: int, unit: str) -> None:
        """Record what a stage redid and what it reused (printed by the CLI, shown in Dagster metadata)."""
        self.reuse.append({"stage": stage, "subject": subject, "redone": redone, "reused": reused, "unit": unit})

    def fresh(self, unit: str, fingerprint: str) -> bool:
        """The unit's outputs exist, unchanged, and were made from exactly `fingerprint`."""
        return stamp_holds(self.layout.stamp(unit), fingerprint, self.hashes, self.data_root)

    def stamp(self, unit: str, fingerprint: str, outputs: list[Path], **about) -> dict:
        return write_stamp(self.layout.stamp(unit), fingerprint, outputs, self.hashes, self.data_root, **about)

    def stamp_of(self, unit: str) -> dict:
        return read_stamp(self.layout.stamp(unit)) or {}

    def output_version(self, *units: str) -> str:
        """The content identity of what the units wrote (their stamps' output hashes): Dagster's data
        version, so an asset rebuilt into the same bytes leaves what follows it fresh."""
        from imp_data.core.fingerprint import digest

        return digest([self.stamp_of(u).get("outputs") for u in units])

    def source(self, name: str) -> SourceSpec:
        try:
            return self.recipe.sources[name]
        except KeyError:
            raise ImpDataError(f"unknown source {name!r}; the recipe declares: "
                               f"{', '.join(self.recipe.sources)}") from None

    def sources_of(self, mix: str) -> list[str]:
        return list(self.recipe.mixes[mix].sources)


def read_frame(path: Path, what: str, hint: str) -> pl.DataFrame:
    if not path.is_file():
        raise ImpDataError(f"{path}: no {what} yet — {hint}")
    return pl.read_parquet(path)
