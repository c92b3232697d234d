"""The URL downloader's ledger, `downloads.parquet`: one row per URL, and what counts as worth retrying.

Statuses: `ok`; `http_<code>` (`http_404`, `http_500`, `http_429`...); `timeout` (connect, read, or the
URL's deadline); `truncated` (fewer bytes than Content-Length); `connection_error` (refused, reset, DNS);
`too_large`; `not_image` (magic bytes are not an image's, e.g. an HTML error page with status 200);
`robots_noai` (X-Robots-Tag noai/noimageai); `too_many_redirects`; `invalid_url`; `cancelled` (the run's
watchdog fired first); `error` (a bug, with its message). The table is rewritten atomically.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from imp_data.core.tables import DOWNLOAD_SCHEMA

RETRY_IN_RUN = frozenset({"timeout", "http_408", "http_429"})
"""Retried within a run (plus every http_5xx): the server said, or the network showed, 'try later'."""
RETRY_ON_RERUN = RETRY_IN_RUN | {"truncated", "connection_error", "cancelled", "error"}
"""Tried again by the next run; everything else (404, not_image, robots_noai, too_large...) is final."""


@dataclass
class DownloadRow:
    """One URL's outcome; `path` is relative to the source's raw folder (`images/<sha1>.jpg`)."""

    url: str
    status: str
    http_status: int | None = None
    attempts: int = 0
    bytes: int | None = None
    sha256: str | None = None
    elapsed_s: float = 0.0
    path: str | None = None
    content_type: str | None = None
    final_url: str | None = None
    detail: str = ""


def is_retryable(status: str, *, rerun: bool = False) -> bool:
    """Whether a status deserves another attempt now (`rerun=False`) or in the next run.

    Example:
        >>> is_retryable("http_503"), is_retryable("http_404"), is_retryable("truncated", rerun=True)
        (True, False, True)
    """
    if status.startswith("http_5"):
        return True
    return status in (RETRY_ON_RERUN if rerun else RETRY_IN_RUN)


def write_downloads(path: Path, rows: list[DownloadRow]) -> None:
    """Write the ledger atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {f.name: [getattr(r, f.name) for r in rows] for f in fields(DownloadRow)}
    table = pa.Table.from_pydict(columns, schema=DOWNLOAD_SCHEMA)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_downloads(path: Path) -> dict[str, DownloadRow]:
    """The ledger as url -> row; empty when there is none yet."""
    if not Path(path).is_file():
        return {}
    return {r["url"]: DownloadRow(**r) for r in pq.read_table(path).to_pylist()}


def summarize_downloads(path: Path) -> dict:
    """Success rate and counts by status, for the stats report.

    Returns:
        {"total", "ok", "success_rate", "by_status": {status: n}, "rate_by_status": {status: share},
        "retried": URLs that needed more than one attempt, "bytes": total bytes stored}

    Example:
        >>> summarize_downloads(Path("/nonexistent/downloads.parquet"))["total"]
        0
    """
    rows = list(read_downloads(path).values())
    total = len(rows)
    counts = Counter(r.status for r in rows)
    by_status = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return {
        "total": total,
        "ok": counts.get("ok", 0),
        "success_rate": round(counts.get("ok", 0) / total, 4) if total else 0.0,
        "by_status": by_status,
        "rate_by_status": {k: round(v / total, 4) for k, v in by_status.items()},
        "retried": sum(1 for r in rows if r.attempts > 1),
        "bytes": sum(r.bytes or 0 for r in rows if r.status == "ok"),
    }
