"""The URL image downloader against a misbehaving loopback server: one exact status row per URL, retries
counted, Retry-After honoured, bounded wall time, reruns that retry only what is retryable, the watchdog,
the per-host limit; plus the pure helpers (magic bytes, X-Robots-Tag, backoff, Retry-After).

Run: pytest tests/test_fetch_http.py  (about 8 s; every socket stays on 127.0.0.1)
"""

from __future__ import annotations

import hashlib
import random
import socket
import time
from pathlib import Path

import pytest

from imp_data.fetch.downloads_table import DownloadRow, read_downloads, summarize_downloads, write_downloads
from imp_data.fetch.http import DownloadConfig, download_images, robots_forbid, sniff_image
from imp_data.fetch.image_store import url_filename
from imp_data.fetch.transport import Backoff, Timeouts, TooManyRedirects, classify_error, parse_retry_after
from tests.servers import NetworkGuard, no_external_network  # noqa: F401 - autouse guard
from tests.servers.image_server import ImageServer, make_image

FAST = DownloadConfig(concurrency=8, per_host=8, timeouts=Timeouts(connect=1.0, read=0.5), url_deadline_s=2.5,
                      max_attempts=3, backoff=Backoff(base=0.05, cap=0.2, max_retry_after=5.0), max_bytes=100_000,
                      seed=0)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    with ImageServer() as srv:
        yield srv


def test_status_table_matches_each_case(server, tmp_path):
    u = server.url
    expected = {  # url -> (status, http status, attempts)
        f"{u}/img/a.jpg": ("ok", 200, 1),
        f"{u}/img/b.png": ("ok", 200, 1),
        f"{u}/status/404": ("http_404", 404, 1),
        f"{u}/status/500": ("http_500", 500, 3),
        f"{u}/flaky/1/k": ("ok", 200, 2),
        f"{u}/ratelimit/1/r": ("ok", 200, 2),
        f"{u}/slow/5": ("timeout", None, 3),
        f"{u}/drip/100": ("timeout", 200, 1),
        f"{u}/truncated": ("truncated", 200, 1),
        f"{u}/html": ("not_image", 200, 1),
        f"{u}/big/300000": ("too_large", 200, 1),
        f"{u}/bigchunked/300000": ("too_large", 200, 1),
        f"{u}/loop/a": ("too_many_redirects", None, 1),
        f"{u}/redirect/2/c.jpg": ("ok", 200, 1),
        f"{u}/robots/noai": ("robots_noai", 200, 1),
        f"{u}/robots/noindex,%20noimageai": ("robots_noai", 200, 1),
        f"{u}/robots/otherbot%3A%20noai": ("ok", 200, 1),
        f"http://127.0.0.1:{closed_port()}/x.jpg": ("connection_error", None, 1),
        "ftp://127.0.0.1/x.jpg": ("invalid_url", None, 0),
    }
    urls = list(expected) + [f"{u}/img/a.jpg"]  # a repeated URL is fetched once
    started = time.monotonic()
    summary = download_images(urls, tmp_path, config=FAST, progress=False)
    wall = time.monotonic() - started

    rows = read_downloads(tmp_path / "downloads.parquet")
    assert {url: (r.status, r.http_status, r.attempts) for url, r in rows.items()} == expected
    assert wall < 8, f"download run took {wall:.1f}s; timeouts and deadlines should bound it near 3s"
    assert server.hits("/img/a.jpg") == 1 and server.hits("/status/500") == 3 and server.hits("/slow/5") == 3
    assert rows[f"{u}/ratelimit/1/r"].elapsed_s >= 1.0, "Retry-After: 1 must be waited out"
    assert "IncompleteRead" in rows[f"{u}/truncated"].detail
    assert rows[f"{u}/redirect/2/c.jpg"].final_url == f"{u}/img/c.jpg"
    for name, fmt in (("a.jpg", "JPEG"), ("b.png", "PNG"), ("c.jpg", "JPEG")):
        url = f"{u}/redirect/2/c.jpg" if name == "c.jpg" else f"{u}/img/{name}"
        stored = tmp_path / "images" / url_filename(url)
        assert stored.read_bytes() == make_image(name, fmt)
        assert rows[url].sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
        assert rows[url].path == f"images/{stored.name}" and rows[url].bytes == stored.stat().st_size
    failed = [r for r in rows.values() if r.status != "ok"]
    assert all(r.path is None for r in failed) and len(list((tmp_path / "images").iterdir())) == 6
    assert summary["total"] == 19 and summary["ok"] == 6 and summary["success_rate"] == round(6 / 19, 4)
    assert summary["by_status"]["timeout"] == 2 and summary["retried"] == 4


def test_rerun_skips_successes_and_retries_only_retryable(server, tmp_path):
    u = server.url
    urls = [f"{u}/img/a.jpg", f"{u}/img/b.jpg", f"{u}/status/404", f"{u}/status/503", f"{u}/truncated",
            f"{u}/html", f"{u}/robots/noai"]
    download_images(urls, tmp_path, config=FAST, progress=False)
    (tmp_path / "images" / url_filename(f"{u}/img/b.jpg")).unlink()  # a lost file is fetched again
    server.clear()

    summary = download_images(urls, tmp_path, config=FAST, progress=False)

    fetched = sorted({r.path for r in server.seen("GET")})
    assert fetched == ["/img/b.jpg", "/status/503", "/truncated"]
    assert summary["attempted"] == 3 and summary["kept"] == 4
    rows = read_downloads(tmp_path / "downloads.parquet")
    assert rows[f"{u}/img/b.jpg"].status == "ok" and rows[f"{u}/status/503"].attempts == 3
    assert rows[f"{u}/status/404"].attempts == 1 and rows[f"{u}/html"].status == "not_image"


def test_watchdog_returns_on_time_and_leaves_cancelled_rows(server, tmp_path):
    u = server.url
    urls = [f"{u}/slow/30/{i}" for i in range(6)]
    config = DownloadConfig(concurrency=3, per_host=3, timeouts=Timeouts(connect=1.0, read=20.0),
                            url_deadline_s=60.0, run_deadline_s=0.8)
    started = time.monotonic()
    summary = download_images(urls, tmp_path, config=config, progress=False)
    assert time.monotonic() - started < 3.0, "the run watchdog must end the call, not the slow server"
    assert summary["by_status"] == {"cancelled": 6}
    rows = read_downloads(tmp_path / "downloads.parquet")
    assert all("watchdog" in r.detail for r in rows.values())


def test_per_host_limit_bounds_concurrent_requests(server, tmp_path):
    urls = [f"{server.url}/slow/0.3/{i}" for i in range(6)]
    config = DownloadConfig(concurrency=6, per_host=2, timeouts=Timeouts(connect=1.0, read=5.0))
    started = time.monotonic()
    summary = download_images(urls, tmp_path, config=config, progress=False)
    assert summary["ok"] == 6
    assert server.max_inflight == 2
    assert time.monotonic() - started >= 0.85  # three rounds of two


def test_a_swallowed_non_loopback_connection_is_still_caught(tmp_path):
    with NetworkGuard() as guard:
        download_images(["http://192.0.2.10/x.jpg"], tmp_path, config=FAST, progress=False)
    rows = read_downloads(tmp_path / "downloads.parquet")
    assert rows["http://192.0.2.10/x.jpg"].status == "connection_error"
    assert guard.violations, "the guard must record the attempt even though the downloader swallowed it"


def test_summarize_downloads_counts_rates_and_retries(tmp_path):
    path = tmp_path / "downloads.parquet"
    write_downloads(path, [DownloadRow("u1", "ok", 200, 1, 10, "a" * 64, 0.1, "images/x.jpg"),
                           DownloadRow("u2", "ok", 200, 2, 20, "b" * 64, 0.2, "images/y.jpg"),
                           DownloadRow("u3", "http_404", 404, 1),
                           DownloadRow("u4", "timeout", None, 3, detail="read timed out")])
    summary = summarize_downloads(path)
    assert summary == {"total": 4, "ok": 2, "success_rate": 0.5,
                       "by_status": {"ok": 2, "http_404": 1, "timeout": 1},
                       "rate_by_status": {"ok": 0.5, "http_404": 0.25, "timeout": 0.25},
                       "retried": 2, "bytes": 30}


# ---------------------------------------------------------------------------------------------------------
# helpers


@pytest.mark.parametrize("data, kind", [
    (make_image("a", "JPEG"), "jpeg"), (make_image("a", "PNG"), "png"), (make_image("a", "GIF"), "gif"),
    (make_image("a", "WEBP"), "webp"), (make_image("a", "BMP"), "bmp"), (make_image("a", "TIFF"), "tiff"),
    (b"<!DOCTYPE html><html>", None), (b'{"error": "not found"}', None), (b"", None),
])
def test_sniff_image_by_magic_bytes(data, kind):
    assert sniff_image(data[:16]) == kind


@pytest.mark.parametrize("values, forbidden", [
    (["noai"], True), (["noindex, noimageai"], True), (["NoAI"], True), (["imp-data: noai"], True),
    (["*: noimageai"], True), (["googlebot: noai"], False), (["noindex", "nofollow"], False),
    (["unavailable_after: 25 Jun 2030 15:00:00 PST"], False), ([], False),
])
def test_robots_forbid(values, forbidden):
    assert robots_forbid(values) is forbidden


def test_backoff_is_exponential_jittered_capped_and_honours_retry_after():
    backoff = Backoff(base=1.0, factor=2.0, cap=5.0, max_retry_after=30.0)
    rng = random.Random(0)
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)):
        waits = [backoff.delay(attempt, rng=rng) for _ in range(50)]
        assert all(full / 2 <= w <= full for w in waits) and len(set(waits)) > 1
    assert backoff.delay(1, retry_after=7.0, rng=rng) == 7.0
    assert backoff.delay(1, retry_after=31.0, rng=rng) is None


def test_parse_retry_after_seconds_and_http_date():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_classify_error():
    import urllib3.exceptions as ue

    assert classify_error(TooManyRedirects("x")) == "too_many_redirects"
    assert classify_error(ue.ReadTimeoutError(None, "/", "read timed out")) == "timeout"
    assert classify_error(ue.NewConnectionError(None, "refused")) == "connection_error"
    assert classify_error(ue.ProtocolError("broken", ue.IncompleteRead(10, 90))) == "truncated"
    assert classify_error(ConnectionResetError()) == "connection_error"


def test_rows_are_written_for_every_url_even_when_all_fail_fast(server, tmp_path: Path):
    urls = [f"{server.url}/status/{code}" for code in (400, 401, 403, 404, 410, 451)]
    download_images(urls, tmp_path, config=FAST, progress=False)
    rows = read_downloads(tmp_path / "downloads.parquet")
    assert [rows[u].status for u in urls] == ["http_400", "http_401", "http_403", "http_404", "http_410", "http_451"]
    assert all(rows[u].attempts == 1 for u in urls)
