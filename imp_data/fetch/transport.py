"""HTTP plumbing shared by the file downloader (`download.py`) and the URL image downloader (`http.py`).

One urllib3 pool with no automatic retries or redirects: redirects are followed here by hand so every
hop is counted and a loop ends as `too_many_redirects` instead of spinning, and the callers run the retry
loop, because what they keep around it urllib3 has no place for: the URL downloader's per-URL deadline,
per-host slots and watchdog, the file downloader's `If-Range` resume. What urllib3 does have, the URL
downloader takes from it: `Backoff.retry` is a `urllib3.Retry` that counts the attempts, reads `Retry-After`
and times the backoff with its jitter. Exceptions become the short status strings the download tables use
(`timeout`, `truncated`, `connection_error`, ...).
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    HTTPError,
    IncompleteRead,
    InvalidHeader,
    LocationParseError,
    NewConnectionError,
    ProtocolError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3Timeout,
)

USER_AGENT = "imp-data/0.1 (dataset curation; honours X-Robots-Tag noai/noimageai)"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a connection and for each read from the socket."""

    connect: float = 10.0
    read: float = 30.0


def make_pool(*, per_host: int = 4, timeouts: Timeouts = Timeouts()) -> urllib3.PoolManager:
    """A pool keeping up to `per_host` connections per host; no automatic retries or redirects."""
    return urllib3.PoolManager(num_pools=256, maxsize=per_host, block=False, retries=False,
                               timeout=urllib3.Timeout(connect=timeouts.connect, read=timeouts.read))


class TooManyRedirects(Exception):
    """More redirect hops than allowed, or a hop back to a URL already visited (a loop)."""


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL: credentials never follow a redirect to another origin."""
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def open_url(pool: urllib3.PoolManager, url: str, *, headers: dict[str, str] | None = None,
             max_redirects: int = 5, method: str = "GET") -> tuple[urllib3.BaseHTTPResponse, str, int]:
    """Send a request and follow redirects by hand; return (streaming response, final URL, hops).

    The response body is not read: the caller streams it (`preload_content=False`) and closes it.
    An `Authorization` header is dropped when a redirect leaves the original origin.

    Raises:
        TooManyRedirects: more than `max_redirects` hops, or a loop.
        urllib3.exceptions.HTTPError: connection problems (see `classify_error`).
    """
    headers = {"User-Agent": USER_AGENT, **(headers or {})}  # per-request headers replace the pool's
    visited = {url}
    current = url
    for hop in range(max_redirects + 1):
        response = pool.request(method, current, headers=headers, preload_content=False, redirect=False,
                                retries=False)
        location = response.headers.get("Location")
        if response.status not in REDIRECT_STATUSES or not location:
            return response, current, hop
        response.close()  # a redirect's body is never needed; do not spend a read on it
        target = urljoin(current, location)
        if origin(target) != origin(url):
            headers.pop("Authorization", None)
        if target in visited:
            raise TooManyRedirects(f"redirect loop: {current} -> {target}")
        if hop == max_redirects:
            raise TooManyRedirects(f"more than {max_redirects} redirects (last: {target})")
        visited.add(target)
        current = target
    raise AssertionError("unreachable: the loop returns or raises")


def classify_error(err: BaseException) -> str:
    """The status string for a transport exception.

    Example:
        >>> classify_error(TooManyRedirects("loop"))
        'too_many_redirects'
    """
    if isinstance(err, TooManyRedirects):
        return "too_many_redirects"
    if isinstance(err, NewConnectionError):  # refused/unreachable/DNS; subclasses ConnectTimeoutError for history
        return "connection_error"
    if isinstance(err, (Urllib3Timeout, TimeoutError)):
        return "timeout"
    if isinstance(err, IncompleteRead) or (isinstance(err, ProtocolError) and _has_incomplete_read(err)):
        return "truncated"
    if isinstance(err, (LocationParseError, ValueError)) or type(err).__name__ == "URLSchemeUnknown":
        return "invalid_url"
    if isinstance(err, (HTTPError, OSError)):
        return "connection_error"
    return "error"


def _has_incomplete_read(err: BaseException) -> bool:
    seen = err
    for _ in range(5):
        if isinstance(seen, IncompleteRead) or "IncompleteRead" in repr(seen):
            return True
        seen = seen.__cause__ or seen.__context__ or (seen.args[-1] if seen.args else None)
        if not isinstance(seen, BaseException):
            return False
    return False


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None when absent or bad.

    Example:
        >>> parse_retry_after("3")
        3.0
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


@dataclass(frozen=True)
class Backoff:
    """How long to wait between attempts, and when a server's `Retry-After` is too long to wait for (then the
    caller gives up instead of sleeping).

    `retry()` is the urllib3 form the URL downloader runs on; `delay()` the file downloader's, whose loop
    counts failures in a row (a resumed body that made progress resets them, which a Retry's counters
    cannot do). The jitter keeps many workers that failed together from retrying together.
    """

    base: float = 1.0
    factor: float = 2.0  # delay() only: urllib3 doubles
    cap: float = 60.0
    max_retry_after: float = 120.0

    def retry(self, attempts: int) -> urllib3.Retry:
        """urllib3's retry state for one URL tried at most `attempts` times: `increment` after each failure
        raises `MaxRetryError` when none is left; after failure n it waits (`retry_wait`) nothing for n = 1,
        then `base/2 * 2**(n-1)` plus up to `base/2` of jitter, at most `cap` — urllib3's curve."""
        return urllib3.Retry(total=attempts - 1, redirect=False, allowed_methods=None, raise_on_status=False,
                             backoff_factor=self.base / 2, backoff_jitter=self.base / 2, backoff_max=self.cap)

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float | None:
        """Seconds to sleep after failed attempt `attempt` (1-based); None = do not retry.

        Example:
            >>> 0.5 <= Backoff(base=1.0).delay(1) <= 1.0
            True
        """
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        full = min(self.cap, self.base * self.factor ** (attempt - 1))
        wait = full * (0.5 + 0.5 * (rng or random).random())
        return max(wait, retry_after) if retry_after is not None else wait


def retry_wait(retry: urllib3.Retry, response: urllib3.BaseHTTPResponse | None) -> tuple[float, float | None]:
    """(seconds to wait, the server's Retry-After or None) before the next attempt, as `Retry.sleep` would
    wait: the Retry-After the response carried, else the backoff. A malformed header counts as none."""
    try:
        after = retry.get_retry_after(response) if response is not None else None
    except InvalidHeader:
        after = None
    return (after if after else retry.get_backoff_time()), after
