"""Download one large file over HTTP(S), resuming across runs (COCO `train2017.zip`, GQA `images.zip`).

Bytes go to `<dest>.incomplete` and the file is renamed to `dest` only when complete, so a final name
never holds a partial file. The partial survives a crash; the next run asks for the rest with
`Range: bytes=N-` guarded by `If-Range` (the ETag or Last-Modified recorded in `<dest>.incomplete.json`),
so a file that changed upstream restarts from zero instead of being spliced. 429/5xx/timeouts/dropped
connections are retried with backoff; an attempt that made progress does not count as a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from pathlib import Path

import urllib3

from imp_data.core.errors import FetchError
from imp_data.core.progress import progress_bar
from imp_data.fetch.transport import (
    Backoff,
    TooManyRedirects,
    classify_error,
    make_pool,
    open_url,
    parse_retry_after,
)

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
DEFAULT_BACKOFF = Backoff()  # frozen dataclass: safe to share as the default


def _partial_paths(dest: Path) -> tuple[Path, Path]:
    return dest.with_name(dest.name + ".incomplete"), dest.with_name(dest.name + ".incomplete.json")


def _hash_existing(path: Path, upto: int) -> hashlib._Hash:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        remaining = upto
        while remaining and (block := fh.read(min(1 << 20, remaining))):
            digest.update(block)
            remaining -= len(block)
    return digest


def download_file(url: str, dest: Path, *, pool: urllib3.PoolManager | None = None, max_failures: int = 5,
                  backoff: Backoff = DEFAULT_BACKOFF, headers: dict[str, str] | None = None, progress: bool = True,
                  rng: random.Random | None = None) -> tuple[int, str]:
    """Fetch `url` into `dest`, resuming a partial download left by an earlier run.

    Args:
        url: http(s) URL of the file.
        dest: Final path; `dest.incomplete` holds the partial bytes meanwhile.
        pool: A urllib3 pool (`transport.make_pool`); a private one by default.
        max_failures: Consecutive failed attempts (no new bytes) before giving up.
        backoff: Waits between attempts.
        headers: Extra request headers (e.g. Authorization).
        progress: Show a byte progress bar with rate and ETA.
        rng: Jitter source (tests pass a seeded one).

    Returns:
        (size in bytes, sha256 hex) of the complete file.

    Raises:
        FetchError: a non-retryable HTTP status, too many redirects, or `max_failures` failures in a row.
    """
    pool = pool or make_pool(per_host=1)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, meta_path = _partial_paths(dest)
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except ValueError:
        meta = {}
    validator = meta.get("validator") if meta.get("url") == url else None
    failures, last, retry_after = 0, "", None
    with progress_bar(desc=f"download {dest.name}", unit="B", unit_scale=True, enabled=progress) as bar:
        while True:
            if failures:
                wait = backoff.delay(failures, retry_after, rng)
                retry_after = None
                if failures >= max_failures or wait is None:
                    raise FetchError(f"{url}: {last} ({failures} failed attempt(s)); rerun to resume from "
                                     f"{part.stat().st_size if part.exists() else 0} bytes", transient=True)
                time.sleep(wait)
            offset = part.stat().st_size if part.exists() else 0
            if offset and not validator:
                part.unlink()  # bytes of unknown provenance: cannot prove they belong to this file
                offset = 0
            request = {"Accept-Encoding": "identity", **(headers or {})}
            if offset:
                request.update({"Range": f"bytes={offset}-", "If-Range": validator})
            try:
                response, _, _ = open_url(pool, url, headers=request, max_redirects=10)
            except TooManyRedirects as err:
                raise FetchError(f"{url}: {err}") from None
            except (urllib3.exceptions.HTTPError, OSError) as err:
                failures, last = failures + 1, f"{classify_error(err)}: {err}"
                continue
            with response:
                status = response.status
                if status == 416 and offset:
                    total = response.headers.get("Content-Range", "").rpartition("/")[2]
                    if total.isdigit() and int(total) == offset:  # complete before the rename; finish it
                        os.replace(part, dest)
                        meta_path.unlink(missing_ok=True)
                        return offset, _hash_existing(dest, offset).hexdigest()
                    part.unlink()
                    continue
                if status in RETRY_STATUSES:
                    failures, last = failures + 1, f"HTTP {status}"
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    continue
                if status not in (200, 206):
                    raise FetchError(f"{url}: HTTP {status} — check the location in the recipe (or its access terms)")
                start, total = 0, None
                if status == 206:
                    m = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                    if not m or int(m.group(1)) != offset:
                        part.unlink(missing_ok=True)  # the server answered a range we did not ask for
                        continue
                    start, total = offset, int(m.group(3)) if m.group(3) != "*" else None
                elif response.headers.get("Content-Length", "").isdigit():
                    total = int(response.headers["Content-Length"])
                etag = response.headers.get("ETag", "")
                validator = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
                meta_path.write_text(json.dumps({"url": url, "validator": validator}))
                digest = _hash_existing(part, start) if start else hashlib.sha256()
                bar.reset(total=total)
                bar.update(start)
                received = 0
                try:
                    with open(part, "ab" if start else "wb") as fh:
                        while chunk := response.read1(1 << 20):  # what arrived, so a drop keeps it
                            fh.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                except (urllib3.exceptions.HTTPError, OSError) as err:
                    failures = 1 if received else failures + 1  # progress resets the failure count
                    last = f"{classify_error(err)} after {start + received} bytes: {err}"
                    continue
            size = start + received
            if total is not None and size != total:
                failures, last = failures + 1, f"truncated: {size} of {total} bytes"
                continue
            os.replace(part, dest)
            meta_path.unlink(missing_ok=True)
            return size, digest.hexdigest()
