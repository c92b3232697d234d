"""Reading lmms-lab's Hugging Face Hub parquet copies of the benchmarks: text columns whole, images on demand.

The files are read as published (a `huggingface_hub.snapshot_download` of the dataset repo): parquet written
by HF `datasets`, whose `Image` feature is a struct column `{bytes: binary, path: string}` holding the
encoded file. The design choice: a split's text columns are read at once, its image bytes are not. Each
row gets a loader that reads the row group holding its image on first use and keeps that one group, so a
split with an image embedded per question (VQAv2 val: one COCO image per row, tens of GB) costs the memory
of one group at a time, as a LLaVA image folder read file by file does.

Errors name the file and the row or column at fault (`SourceFormatError`).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from imp_data.core.errors import ImpDataError, SourceFormatError

REDOWNLOAD = "re-download it from the lmms-lab Hub repo (huggingface_hub.snapshot_download)"


def is_image_type(kind: pa.DataType) -> bool:
    """True for the HF `Image` feature's storage: a struct with a binary `bytes` field."""
    if not pa.types.is_struct(kind):
        return False
    names = [kind.field(i).name for i in range(kind.num_fields)]
    return "bytes" in names and (pa.types.is_binary(kind.field("bytes").type)
                                 or pa.types.is_large_binary(kind.field("bytes").type))


def _unreadable(path: Path, err: Exception) -> SourceFormatError:
    return SourceFormatError(f"{path}: not a readable parquet file ({type(err).__name__}: {err}) — {REDOWNLOAD}")


def read_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise _unreadable(path, err) from None


class ImageColumn:
    """Lazy access to one parquet file's image column: `bytes_at(row)` reads the row group holding `row`
    and keeps it, so reading the rows in order reads each group once."""

    def __init__(self, path: Path, column: str):
        self.path, self.column = path, column
        try:
            with pq.ParquetFile(path) as f:
                meta = f.metadata
        except (pa.ArrowException, OSError) as err:
            raise _unreadable(path, err) from None
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        self._starts = [sum(sizes[:g]) for g in range(len(sizes))]
        self._rows = sum(sizes)
        self._group: tuple[int, pa.StructArray | None] = (-1, None)

    def loader(self, row: int) -> Callable[[], bytes]:
        return partial(self.bytes_at, row)

    def bytes_at(self, row: int) -> bytes:
        if not 0 <= row < self._rows:
            raise IndexError(f"{self.path}: row {row} of {self._rows}")
        group = bisect_right(self._starts, row) - 1
        if self._group[0] != group:
            try:
                with pq.ParquetFile(self.path) as f:
                    array = f.read_row_group(group, columns=[self.column]).column(self.column).combine_chunks()
            except (pa.ArrowException, OSError) as err:
                raise _unreadable(self.path, err) from None
            self._group = (group, array)
        value = self._group[1][row - self._starts[group]].as_py()
        if value is None or value.get("bytes") is None:
            path = (value or {}).get("path")
            raise SourceFormatError(f"{self.path} row {row}: column {self.column!r} holds no embedded image bytes"
                                    + (f" (only the path {path!r})" if path else "") + f" — {REDOWNLOAD}")
        return value["bytes"]


@dataclass
class ParquetRows:
    """One parquet file read: its rows (the asked columns as Python values; float NaN read as None) and, when
    asked for, its image column."""

    path: Path
    name: str  # the path relative to the benchmark folder, for row names such as `data/x.parquet#3`
    rows: list[dict]
    images: ImageColumn | None

    def where(self, row: int) -> str:
        return f"{self.path} row {row}"


def _clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def read_parquet(path: Path, root: Path, columns: Sequence[str], *, optional: Sequence[str] = (),
                 image: str | None = None) -> ParquetRows:
    """The rows of one lmms-lab parquet file, checking the published columns are there.

    Args:
        columns: columns every row must have (read as Python values).
        optional: columns read when present (absent ones are absent from the row dicts).
        image: the HF `Image` column to give lazy access to (its bytes are not read here).

    Raises:
        SourceFormatError: the file is not parquet, lacks a column, or `image` is not an `Image` feature.
    """
    schema = read_schema(path)
    missing = [c for c in (*columns, *([image] if image else [])) if c not in schema.names]
    if missing:
        raise SourceFormatError(f"{path}: missing column(s) {', '.join(map(repr, missing))} (has "
                                f"{', '.join(schema.names) or 'none'}) — not lmms-lab's published layout")
    if image and not is_image_type(schema.field(image).type):
        raise SourceFormatError(f"{path}: column {image!r} is {schema.field(image).type}, not an HF Image "
                                "struct {bytes, path}")
    wanted = [*columns, *(c for c in optional if c in schema.names)]
    try:
        table = pq.read_table(path, columns=wanted)
    except (pa.ArrowException, OSError) as err:
        raise _unreadable(path, err) from None
    rows = [{k: _clean(v) for k, v in row.items()} for row in table.to_pylist()]
    return ParquetRows(path, path.relative_to(root).as_posix(), rows, ImageColumn(path, image) if image else None)


def parquet_files(root: Path, pattern: str) -> list[Path]:
    """The files of one lmms-lab split, e.g. `data/test-*.parquet`, in name order (= shard order)."""
    return sorted(p for p in Path(root).glob(pattern) if p.is_file())


def read_split(root: Path, pattern: str, columns: Sequence[str], *, optional: Sequence[str] = (),
               image: str | None = None) -> list[ParquetRows]:
    """Every file of one split (`parquet_files`), each read with `read_parquet`.

    Raises:
        ImpDataError: no file matches `pattern` under `root`.
    """
    files = parquet_files(root, pattern)
    if not files:
        raise ImpDataError(f"{root}: no {pattern} — {REDOWNLOAD} into this folder")
    return [read_parquet(p, root, columns, optional=optional, image=image) for p in files]


def list_parquet_images(root: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every image embedded in the parquet files under `root` (all configs and splits),
    named `<file relative to root>#<row>` (`#<row>:<column>` where a file has several image columns).

    Hidden folders (`.cache/huggingface`, which `snapshot_download` writes) are skipped; rows whose image is
    null are skipped; a file that is not parquet raises, naming it.

    Example:
        >>> list(list_parquet_images(Path("/nonexistent")))
        []
    """
    root = Path(root)
    files = sorted(p for p in root.rglob("*.parquet")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts[:-1]))
    for path in files:
        columns = [f.name for f in read_schema(path) if is_image_type(f.type)]
        if not columns:
            continue
        name, row = path.relative_to(root).as_posix(), 0
        try:
            with pq.ParquetFile(path) as f:
                for batch in f.iter_batches(columns=columns, batch_size=64):
                    data = [[None if v is None else v.get("bytes") for v in batch.column(c).to_pylist()]
                            for c in columns]
                    for i in range(batch.num_rows):
                        for c, values in zip(columns, data):
                            if values[i] is not None:
                                yield (f"{name}#{row + i}" + (f":{c}" if len(columns) > 1 else "")), values[i]
                    row += batch.num_rows
        except (pa.ArrowException, OSError) as err:
            raise _unreadable(path, err) from None
