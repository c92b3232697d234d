"""LAION-GPT-V (`data/train-*.parquet`, HF laion/gpt4v-dataset), docs/sources.md §10.

Columns `link, caption, message_id, timestamp, image` (`image` is null: URLs only), read in batches.
There is no instruction text, so the human turn is a caption request drawn from a fixed pool by a keyed
hash of `message_id` — deterministic and independent of row order, file split or revision. The record's
image is the URL itself; the URL downloader fetches it after normalising, and rows whose download
failed are rejected at render (`image_missing`), never kept without pixels.

Row groups are read one at a time, so a data page that cannot be read costs the rows after it in its
row group (`corrupt_row` rejects), not the file; `timestamp` is kept as provenance, whatever its type.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from imp_data.core.errors import SourceFormatError
from imp_data.core.schema import IMAGE_TOKEN
from imp_data.core.source_options import LaionOptions
from imp_data.sources.base import Adapter, Candidate, Problem, Record, native_id, resolve_files

# ALLaVA's 15 caption instructions, verbatim and in file order (GitHub FreedomIntelligence/ALLaVA
# prompts/instructions_for_captions.txt @ ffb7c75): GPT-4V captions requested the way ALLaVA's own
# Caption-LAION records were (docs/sources.md §10 recommends this pool).
COLUMNS = ["link", "caption", "message_id", "timestamp"]
_BATCH = 4096


def pick_prompt(message_id: str, prompts: list[str], key: str = "imp-laion") -> str:
    """The prompt for one row: a keyed 64-bit hash of its message id, modulo the pool size.

    Example:
        >>> pick_prompt("m1", ["a", "b", "c"]) == pick_prompt("m1", ["a", "b", "c"])
        True
    """
    digest = hashlib.blake2b(message_id.encode(), digest_size=8, person=key.encode()).digest()
    return prompts[int.from_bytes(digest, "big") % len(prompts)]


def _open(path: Path) -> pq.ParquetFile:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise SourceFormatError(f"{path}: not a readable parquet file ({err})") from None
    missing = [c for c in ("link", "caption", "message_id") if c not in parquet.schema_arrow.names]
    if missing:
        raise SourceFormatError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    return parquet


def _rows(batch: pa.RecordBatch) -> list[dict]:
    """The batch's rows as dicts, `timestamp` as the adapter keeps it: provenance only, so a published
    string stays as is, a typed timestamp or date becomes ISO 8601 text (UTC as 'Z'), any other type null."""
    kind = batch.schema.field("timestamp").type if "timestamp" in batch.schema.names else pa.string()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return batch.to_pylist()
    rows = batch.drop_columns(["timestamp"]).to_pylist()
    for row, stamp in zip(rows, _iso(batch.column("timestamp"))):
        row["timestamp"] = stamp
    return rows


def _iso(column: pa.Array) -> list:
    """A typed timestamp column as ISO 8601 strings (None for a type that is not a time)."""
    kind = column.type
    if pa.types.is_timestamp(kind):  # wall-clock UTC, whatever the zone, without pandas types
        zone = "Z" if kind.tz else ""
        return [v and v.isoformat() + zone for v in column.cast(pa.timestamp("us"), safe=False).to_pylist()]
    if pa.types.is_date(kind):
        return [v and v.isoformat() for v in column.to_pylist()]
    return [None] * len(column)


def _unreadable(parquet: pq.ParquetFile, path: Path, name: str, group: int, done: int, n: int,
                err: Exception) -> Iterator[Problem]:
    """The rows of a row group after a page that cannot be read (corrupt or truncated): one `corrupt_row`
    problem per row, named by its message id, when that column still reads; otherwise the file is
    unusable as published and one line names it and the row group."""
    try:
        ids = parquet.read_row_group(group, columns=["message_id"]).column(0).to_pylist()[done:]
    except (OSError, pa.ArrowException):
        rows = parquet.metadata.row_group(group).num_rows
        raise SourceFormatError(f"{path}: row group {group} (rows {n - done}-{n - done + rows - 1}) cannot be "
                                f"read: {str(err).splitlines()[0]}") from None
    detail = f"row group {group} holds a data page that cannot be read ({str(err).splitlines()[0]})"
    for k, value in enumerate(ids):
        yield Problem(native_id(value) or f"@{name}:{n + k}", "corrupt_row", f"{name} row {n + k}: {detail}")


class LaionGPT4VAdapter(Adapter):
    name = "laion_gpt4v"
    description = "LAION-GPT-V GPT-4V captions of web images (URLs)"
    default_files = ["data/train-*.parquet"]
    Options = LaionOptions

    def read(self, root: Path, files: list[str], options: LaionOptions) -> Iterator[Record]:
        for path in resolve_files(root, files):
            name = path.relative_to(root).as_posix()
            parquet = _open(path)
            columns = [c for c in COLUMNS if c in parquet.schema_arrow.names]
            n = 0
            for group in range(parquet.num_row_groups):
                done = 0
                try:
                    for batch in parquet.iter_batches(batch_size=_BATCH, row_groups=[group], columns=columns):
                        for row in _rows(batch):
                            yield self._row(row, f"{name} row {n}", f"@{name}:{n}", options)
                            n, done = n + 1, done + 1
                except (OSError, pa.ArrowException) as err:
                    for problem in _unreadable(parquet, path, name, group, done, n, err):
                        yield problem
                        n += 1
    @staticmethod
    def _row(row: dict, where: str, fallback: str, options: LaionOptions) -> Record:
        sid = native_id(row["message_id"])
        if sid is None:
            return Problem(fallback, "missing_field", f"{where}: no message_id")
        link, caption = row["link"], row["caption"]
        if not isinstance(link, str) or not link.strip():
            return Problem(sid, "missing_field", f"{where}: no link")
        if not isinstance(caption, str) or not caption.strip():
            return Problem(sid, "empty_answer", f"{where}: empty caption")
        conv = [{"from": "human", "value": f"{IMAGE_TOKEN}\n{pick_prompt(sid, options.prompts, options.prompt_key)}"},
                {"from": "gpt", "value": caption}]
        return Candidate(sid, link, conv, {"timestamp": row.get("timestamp")}, where)
