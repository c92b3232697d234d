"""Loopback test servers: HTTP on 127.0.0.1 that logs what clients did (the Hub and image servers build on it).

Servers bind 127.0.0.1 on a port the OS picks and serve from a daemon thread. Each records the requests
it saw (method, path, headers) so a test asserts what a client really did: a `Range` header on a resumed
download, no GET at all on a rerun. The network guard that fails any test (or subprocess) reaching past
loopback lives in tests/netguard/ and is autouse for every test from tests/conftest.py; it is re-exported
here (`NetworkGuard`, `no_external_network`) for the modules that import it from this package.

Use:
    with ImageServer() as server: ...
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from netguard import NetworkGuard  # noqa: E402, F401 - re-exported; tests.conftest put it on sys.path

from tests.conftest import no_external_network  # noqa: F401 - re-exported: already autouse for every test


@dataclass
class Seen:
    """One request as the server saw it."""

    server: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def range(self) -> str | None:
        return self.headers.get("range")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # clients hanging up mid-response is what several tests do on purpose


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.1:0 that logs every request; a context manager."""

    name = "server"
    handler: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()  # released on close so handlers that wait never outlive the test
        self.httpd = _Server(("127.0.0.1", 0), self.handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.name}-loopback", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def record(self, handler: BaseHTTPRequestHandler) -> None:
        seen = Seen(self.name, handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()})
        with self.lock:
            self.requests.append(seen)

    def seen(self, method: str | None = None, contains: str = "") -> list[Seen]:
        """Requests so far, optionally only one method and paths containing `contains`."""
        with self.lock:
            return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class QuietHandler(BaseHTTPRequestHandler):
    """Base handler: HTTP/1.1 keep-alive, no stderr logging, and a body sender that honours Range."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall

    @property
    def owner(self):
        return self.server.owner  # type: ignore[attr-defined]

    def log_message(self, format, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        pass

    def send_bytes(self, data: bytes, *, status: int = 200, content_type: str = "application/octet-stream",
                   headers: dict[str, str] | None = None, ranges: bool = False,
                   drop_after: int | None = None, stall_after: int | None = None) -> None:
        """Send `data` (only headers for HEAD). With `ranges`, a `Range: bytes=N-` request gets a 206.

        `drop_after` sends that many body bytes and closes the connection (a dropped transfer);
        `stall_after` sends that many and then waits until the server closes (a hung transfer).
        """
        start, end = 0, len(data)
        requested = self.headers.get("Range") if ranges else None
        validator = self.headers.get("If-Range")
        if requested and validator and validator not in {v for k, v in (headers or {}).items()
                                                         if k.lower() in ("etag", "last-modified")}:
            requested = None  # the client's partial is of another version: send it all (RFC 9110 If-Range)
        if requested and (m := _RANGE.match(requested.strip())):
            start = int(m.group(1))
            end = min(int(m.group(2)) + 1, len(data)) if m.group(2) else len(data)
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:end]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        cut = drop_after if drop_after is not None else stall_after
        if cut is None or cut >= len(body):
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut])
        self.wfile.flush()
        if stall_after is not None:
            self.owner.closing.wait(30)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def send_status(self, status: int, text: str = "", headers: dict[str, str] | None = None) -> None:
        self.send_bytes(text.encode(), status=status, content_type="text/plain; charset=utf-8", headers=headers)
