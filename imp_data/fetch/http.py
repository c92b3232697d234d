"""Download URL-only images (LAION-GPT-V) so that every URL ends as one status row and nothing hangs.

The shape follows img2dataset's downloader: worker threads with a global bound and a per-host bound
(LAION-GPT-V's links mostly share one CDN host, so the per-host bound is the politeness that matters);
connect and read timeouts on every socket operation, a deadline per URL (which also stops a server that
drips one byte at a time) and an optional deadline for the whole run (the watchdog: URLs still pending
then become `cancelled`, and the call returns). Retries, only for 429/408/5xx and timeouts, are counted and
timed by a `urllib3.Retry` (backoff with jitter, `Retry-After` honoured); the loop around it is ours, so a
wait never outlasts the URL's deadline, never holds a host slot, and ends when the watchdog fires. Bodies
are capped (`too_large`), checked by magic bytes (an HTML error page served with 200 is `not_image`), and
`X-Robots-Tag: noai`/`noimageai` is honoured (`robots_noai`); redirects are followed with a limit (a loop
is `too_many_redirects`).

The one design choice: failures are data. Each URL gets one row in `<out>/downloads.parquet` (status,
HTTP status, attempts, bytes, sha256, elapsed, stored path); images go to `<out>/images/<sha1(url)>.jpg`
(`image_store.url_filename`, atomically). A rerun keeps successes whose file is intact and failures that
are final (404, not_image, robots_noai...), and tries again only the transient ones (`RETRY_ON_RERUN`).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import urllib3

from imp_data.core.progress import progress_bar
from imp_data.fetch.downloads_table import (
    DownloadRow,
    is_retryable,
    read_downloads,
    summarize_downloads,
    write_downloads,
)
from imp_data.fetch.image_store import url_filename
from imp_data.fetch.transport import (
    Backoff,
    Timeouts,
    TooManyRedirects,
    classify_error,
    make_pool,
    open_url,
    retry_wait,
)

__all__ = ["DownloadConfig", "download_images", "robots_forbid", "sniff_image", "summarize_downloads"]

_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
          (b"BM", "bmp"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"))
_AGENT_PREFIX = re.compile(r"^\s*([A-Za-z0-9_.*-]+)\s*:\s*(.*)$")


def sniff_image(head: bytes) -> str | None:
    """The image format from the first bytes, or None when they are not a known image's magic.

    Example:
        >>> sniff_image(b"\\x89PNG\\r\\n\\x1a\\n...."), sniff_image(b"<!doctype html>")
        ('png', None)
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def robots_forbid(values: Iterable[str], agent: str = "imp-data",
                  directives: frozenset[str] = frozenset({"noai", "noimageai"})) -> bool:
    """Whether `X-Robots-Tag` header values forbid use for AI training, for us.

    A value may be aimed at one crawler (`otherbot: noai`); only unprefixed values and those for `*` or
    for `agent` apply.

    Example:
        >>> robots_forbid(["noindex, noai"]), robots_forbid(["googlebot: noimageai"]), robots_forbid(["none"])
        (True, False, False)
    """
    for value in values:
        target, rules = None, value
        m = _AGENT_PREFIX.match(value)
        if m and m.group(1).lower() not in ("unavailable_after", "max-snippet", "max-image-preview",
                                             "max-video-preview"):
            target, rules = m.group(1).lower(), m.group(2)
        if target not in (None, "*", agent.lower()):
            continue
        if any(rule.strip().lower() in directives for rule in rules.split(",")):
            return True
    return False


@dataclass(frozen=True)
class DownloadConfig:
    """How hard to try, and how politely. Defaults suit a 12K-URL LAION-GPT-V run."""

    concurrency: int = 16
    """Worker threads (URLs in flight at once)."""
    per_host: int = 4
    """URLs in flight per host."""
    timeouts: Timeouts = Timeouts(connect=10.0, read=20.0)
    """Per socket operation."""
    url_deadline_s: float = 120.0
    """Whole budget of one URL: every attempt, body read and backoff sleep."""
    run_deadline_s: float | None = None
    """Watchdog for the whole call; URLs unfinished by then become `cancelled` (retried on rerun)."""
    max_attempts: int = 3
    """Attempts per URL, for 429/408/5xx and timeouts only."""
    backoff: Backoff = Backoff(base=1.0, cap=30.0, max_retry_after=60.0)
    """Waits between attempts (`Backoff.retry`); a Retry-After beyond `max_retry_after` ends the URL instead."""
    max_bytes: int = 25 * 1024 * 1024
    """Larger bodies are `too_large` (checked on Content-Length first, then while reading)."""
    max_redirects: int = 5
    honor_robots: bool = True
    """Skip images whose X-Robots-Tag says noai/noimageai."""
    agent: str = "imp-data"
    """Crawler name X-Robots-Tag directives may address."""
    flush_every: int = 2000
    """Rewrite the table after this many finished URLs, so a killed run keeps its progress."""
    seed: int | None = None
    """Unused: urllib3's Retry draws the jitter from `random`. Accepted so that configs setting it still load."""


@dataclass
class _Attempt:
    status: str
    http_status: int | None = None
    data: bytes = b""
    content_type: str | None = None
    final_url: str | None = None
    detail: str = ""
    response: urllib3.BaseHTTPResponse | None = None  # a refusal's (closed): its status and Retry-After


@dataclass
class _Shared:
    """What the workers share: the pool, per-host slots, the stop flag."""

    config: DownloadConfig
    pool: urllib3.PoolManager
    images: Path
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    slots: dict[str, threading.BoundedSemaphore] = field(default_factory=dict)

    def slot(self, host: str) -> threading.BoundedSemaphore:
        with self.lock:
            if host not in self.slots:
                self.slots[host] = threading.BoundedSemaphore(self.config.per_host)
            return self.slots[host]


def _attempt(url: str, shared: _Shared, deadline: float) -> _Attempt:
    cfg = shared.config
    try:
        response, final_url, _ = open_url(shared.pool, url, max_redirects=cfg.max_redirects,
                                          headers={"Accept": "image/*,*/*;q=0.5", "Accept-Encoding": "identity"})
    except TooManyRedirects as err:
        return _Attempt("too_many_redirects", detail=str(err))
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as err:
        return _Attempt(classify_error(err), detail=f"{type(err).__name__}: {err}"[:300])
    with response:
        code, ctype = response.status, response.headers.get("Content-Type")
        if code != 200:
            return _Attempt(f"http_{code}", code, content_type=ctype, final_url=final_url, response=response)
        if cfg.honor_robots and robots_forbid(response.headers.getlist("X-Robots-Tag"), cfg.agent):
            return _Attempt("robots_noai", code, content_type=ctype, final_url=final_url,
                            detail="; ".join(response.headers.getlist("X-Robots-Tag")))
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > cfg.max_bytes:
            return _Attempt("too_large", code, content_type=ctype, final_url=final_url,
                            detail=f"Content-Length {length} > {cfg.max_bytes}")
        chunks, size = [], 0
        try:
            while chunk := response.read1(64 * 1024):  # read1: returns what arrived, so deadlines bite
                size += len(chunk)
                if size > cfg.max_bytes:
                    return _Attempt("too_large", code, content_type=ctype, final_url=final_url,
                                    detail=f"body over {cfg.max_bytes} bytes")
                if shared.stop.is_set():
                    return _Attempt("cancelled", code, detail=f"run watchdog fired after {size} bytes")
                if time.monotonic() > deadline:
                    return _Attempt("timeout", code, content_type=ctype, final_url=final_url,
                                    detail=f"URL deadline passed after {size} bytes")
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            return _Attempt(classify_error(err), code, content_type=ctype, final_url=final_url,
                            detail=f"after {size} bytes: {type(err).__name__}: {err}"[:300])
    data = b"".join(chunks)
    if sniff_image(data[:16]) is None:
        head = data[:24].decode("ascii", "replace").strip()
        return _Attempt("not_image", code, content_type=ctype, final_url=final_url,
                        detail=f"{len(data)} bytes of {ctype or 'unknown type'}, starting {head!r}")
    return _Attempt("ok", code, data, ctype, final_url)


def _store(data: bytes, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _acquire(slot: threading.BoundedSemaphore, stop: threading.Event) -> bool:
    """Wait for a host slot; False when the watchdog fires first."""
    while not slot.acquire(timeout=0.2):
        if stop.is_set():
            return False
    return True


def _fetch(url: str, shared: _Shared) -> DownloadRow:
    """All attempts for one URL; never raises (a bug becomes status `error`)."""
    cfg, started = shared.config, time.monotonic()
    attempts, outcome = 0, _Attempt("cancelled", detail="run watchdog fired before the first attempt")
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return DownloadRow(url, "invalid_url", detail="not an http(s) URL")
        slot, deadline, retry = shared.slot(parts.hostname.lower()), 0.0, cfg.backoff.retry(cfg.max_attempts)
        while not shared.stop.is_set() and _acquire(slot, shared.stop):
            deadline = deadline or time.monotonic() + cfg.url_deadline_s  # queueing for a host slot is free
            try:
                attempts += 1
                outcome = _attempt(url, shared, deadline)
            finally:
                slot.release()
            if outcome.status == "ok" or not is_retryable(outcome.status):
                break
            try:
                retry = retry.increment("GET", url, response=outcome.response)
            except urllib3.exceptions.MaxRetryError:
                break  # that was the last attempt
            pause, retry_after = retry_wait(retry, outcome.response)
            if retry_after is not None and retry_after > cfg.backoff.max_retry_after:
                outcome.detail = f"Retry-After {retry_after:.0f}s > {cfg.backoff.max_retry_after:.0f}s allowed"
                break
            if time.monotonic() + pause > deadline:
                if "deadline" not in outcome.detail:
                    outcome.detail = (outcome.detail + "; " if outcome.detail else "") + "URL deadline reached"
                break
            if shared.stop.wait(pause):
                break
        row = DownloadRow(url, outcome.status, outcome.http_status, attempts, detail=outcome.detail,
                          content_type=outcome.content_type, final_url=outcome.final_url)
        if outcome.status == "ok":
            name = url_filename(url)
            _store(outcome.data, shared.images / name)
            row.bytes, row.path = len(outcome.data), f"images/{name}"
            row.sha256 = hashlib.sha256(outcome.data).hexdigest()
    except Exception as err:  # noqa: BLE001 - one URL's bug must not end the other 12K
        row = DownloadRow(url, "error", None, attempts, detail=f"{type(err).__name__}: {err}"[:300])
    row.elapsed_s = round(time.monotonic() - started, 3)
    return row


def _plan(urls: list[str], out_dir: Path, previous: dict[str, DownloadRow]) -> tuple[dict[str, DownloadRow], list[str]]:
    """Rows to keep as they are, and URLs to (re)try."""
    keep, todo = {}, []
    for url in urls:
        row = previous.get(url)
        stored = out_dir / "images" / url_filename(url)
        if row is not None and row.status == "ok":
            if row.path and stored.is_file() and stored.stat().st_size == row.bytes:
                keep[url] = row
                continue
        elif row is not None and not is_retryable(row.status, rerun=True):
            keep[url] = row
            continue
        elif row is None and stored.is_file():  # stored by a run killed before its table flush
            data = stored.read_bytes()
            keep[url] = DownloadRow(url, "ok", None, 0, len(data), hashlib.sha256(data).hexdigest(), 0.0,
                                    f"images/{stored.name}", detail="recovered from images/ (no row yet)")
            continue
        todo.append(url)
    return keep, todo


def download_images(urls: Iterable[str], out_dir: Path, *, config: DownloadConfig = DownloadConfig(),
                    progress: bool = True) -> dict:
    """Download image URLs into `out_dir/images/` and record one row per URL in `out_dir/downloads.parquet`.

    Args:
        urls: Image URLs (duplicates are fetched once).
        out_dir: The source's raw folder, e.g. `DATA/raw/laion_gpt4v`.
        config: Concurrency, timeouts, retries, limits.
        progress: A progress bar with rate and ETA.

    Returns:
        `summarize_downloads` of the whole table, plus `attempted` (URLs tried this run), `kept` (rows
        reused from an earlier run) and `elapsed_s`.
    """
    started = time.monotonic()
    unique = list(dict.fromkeys(urls))
    images = Path(out_dir) / "images"
    images.mkdir(parents=True, exist_ok=True)
    table = Path(out_dir) / "downloads.parquet"
    previous = read_downloads(table)
    rows, todo = _plan(unique, Path(out_dir), previous)
    for url, row in previous.items():
        rows.setdefault(url, row)  # rows of URLs not asked for this time stay in the table
    order = unique + sorted(set(previous) - set(unique))
    shared = _Shared(config, make_pool(per_host=config.per_host, timeouts=config.timeouts), images)
    executor = ThreadPoolExecutor(max_workers=max(1, config.concurrency), thread_name_prefix="imp-download")
    by_host: dict[str, list[str]] = defaultdict(list)
    for url in todo:
        by_host[urlsplit(url).hostname or ""].append(url)
    interleaved = [u for group in _round_robin(list(by_host.values())) for u in group]  # hosts take turns
    futures = {executor.submit(_fetch, url, shared): url for url in interleaved}
    watchdog = started + config.run_deadline_s if config.run_deadline_s is not None else None
    pending, finished, ok = set(futures), 0, 0
    try:
        with progress_bar(total=len(futures), desc=f"download {Path(out_dir).name}", unit="img",
                          enabled=progress) as bar:
            while pending:
                left = None if watchdog is None else max(0.0, watchdog - time.monotonic())
                done, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
                for future in done:
                    row = future.result()
                    rows[row.url] = row
                    finished += 1
                    ok += row.status == "ok"
                    bar.update(1)
                    bar.set_postfix_str(f"ok {ok}/{finished}", refresh=False)
                    if finished % config.flush_every == 0:
                        write_downloads(table, [rows[u] for u in order if u in rows])
                if watchdog is not None and time.monotonic() >= watchdog:
                    break
    finally:
        shared.stop.set()  # stragglers stop at their next check; a blocked read ends within its timeout
        for future in pending:
            future.cancel()
            url = futures[future]
            rows[url] = DownloadRow(url, "cancelled", detail=f"run watchdog ({config.run_deadline_s}s) fired")
        executor.shutdown(wait=False, cancel_futures=True)
        write_downloads(table, [rows[u] for u in order if u in rows])
    summary = summarize_downloads(table)
    summary.update(attempted=len(todo), kept=len(unique) - len(todo), elapsed_s=round(time.monotonic() - started, 3))
    return summary


def _round_robin(groups: list[list[str]]) -> list[list[str]]:
    """[[a1, a2], [b1]] -> [[a1, b1], [a2]]: one URL per host per round."""
    rounds: list[list[str]] = []
    for group in groups:
        for i, url in enumerate(group):
            if i == len(rounds):
                rounds.append([])
            rounds[i].append(url)
    return rounds
