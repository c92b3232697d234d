"""Atomic file writes: a reader never sees a half-written file under its final name.

Every output goes to a temporary sibling and is renamed into place once complete (rename is atomic on
POSIX within a filesystem), so a crash leaves either the old file or the new one, plus a stray temp
file that `remove_stale_temps` deletes when the next build starts (under the build lock).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def tmp_path_for(path: Path) -> Path:
    """A fresh hidden temp sibling for writing `path`: `.{name}.{pid}.{random}.tmp`.

    Unique per call (pid plus a random suffix), so two writers of one path, in two processes or two
    threads, never write into the same temp file; the last rename wins with a complete file. Call it once
    per write and keep the result.
    """
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def is_temp_name(name: str) -> bool:
    """A hidden `.…tmp` file: ours (`tmp_path_for`) or the fetchers' `.{name}.{pid}….tmp`."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def remove_stale_temps(root: str | Path) -> int:
    """Delete the temp files (`is_temp_name`) under `root`, left by a killed writer; return how many.

    Only safe while nothing writes under `root`: the build calls it on its own folders while it holds the
    build lock. Files only (a training checkpoint's temp *folder* is not touched); symlinked folders are
    not followed, so a linked mirror is left alone.
    """
    removed = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if is_temp_name(name):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except FileNotFoundError:  # its writer finished or cleaned up meanwhile
                    pass
    return removed


@contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temp path to write; on success fsync and rename it to `path`, on error remove it.

    `fsync=False` keeps the rename (a reader never sees half a file, whatever the process does) but not
    durability across a power cut: for cache entries, which are checked before use and can be remade.

    Example:
        >>> import tempfile; d = Path(tempfile.mkdtemp())
        >>> with atomic_path(d / "x.txt") as tmp: _ = tmp.write_text("hi")
        >>> (d / "x.txt").read_text()
        'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks.

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"abc")
        >>> file_sha256(p)[:12]
        'ba7816bf8f01'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dumps_canonical(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no ASCII escaping, fixed separators."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """Write JSON (sorted keys, trailing newline) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        text = json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=indent) + "\n"
        tmp.write_text(text, encoding="utf-8")
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def read_table(path: str | Path, columns: list[str] | None = None):
    """A Parquet table as a polars DataFrame; a missing, truncated or corrupt file is one `ImpDataError`
    line naming it (polars' own errors are multi-line and name neither the file nor the fix)."""
    import polars as pl

    from imp_data.core.errors import ImpDataError

    try:
        return pl.read_parquet(path, columns=columns)
    except Exception as err:  # polars raises ComputeError, OSError, pyarrow errors...: all mean "unreadable"
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ImpDataError(f"{path}: not a readable Parquet table ({first}) — rebuild it "
                           "(imp-data build RECIPE redoes whatever is missing or damaged)") from None


def read_table_schema(path: str | Path) -> dict:
    """A Parquet file's column names and types, with `read_table`'s one-line error."""
    import polars as pl

    from imp_data.core.errors import ImpDataError

    try:
        return dict(pl.read_parquet_schema(path))
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ImpDataError(f"{path}: not a readable Parquet table ({first})") from None


def tree_files(directory: Path) -> list[Path]:
    """Every file under `directory`, sorted; [] when it does not exist."""
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else []
