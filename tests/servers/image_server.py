"""A web server on 127.0.0.1 that misbehaves in every way image URLs do in the wild.

Routes (`ImageServer.url + path`):
    /img/<name>.jpg|.png        a real image (Pillow), deterministic per name
    /status/<code>              that status, every time (404, 500, 403...)
    /flaky/<n>/<key>            500 for the first n requests of <key>, then an image
    /ratelimit/<secs>/<key>     429 with `Retry-After: <secs>` on the first request, then an image
    /slow/<secs>[/<key>]        waits <secs> before answering; `max_inflight` counts concurrent ones
    /drip/<n>                   an image sent one byte every 0.1 s, n bytes in all (defeats read timeouts)
    /truncated                  `Content-Length: 5000`, sends 100 bytes, closes
    /html                       200 text/html (an error page that says 200)
    /big/<bytes>                200 image/jpeg with a JPEG header and <bytes> in all, Content-Length set
    /bigchunked/<bytes>         the same without Content-Length (body ends when the connection closes)
    /loop/<a|b>                 302 a -> b -> a ...
    /redirect/<k>/<name>        k redirects, then /img/<name>
    /robots/<value>             an image with `X-Robots-Tag: <value>`
    /files/<name>               bytes registered with `add_file`, with Range and `fault()`s (drop/stall)
`hits(path)` counts the requests of a path.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
from collections import Counter
from urllib.parse import unquote, urlsplit

from PIL import Image

from tests.servers import LoopbackServer, QuietHandler


def make_image(name: str, fmt: str = "JPEG", size: tuple[int, int] = (48, 32)) -> bytes:
    """A small real image whose pixels depend on `name`."""
    rng = random.Random(name)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    img.putpixel((1, 1), (255, 0, 0))
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


class ImageServer(LoopbackServer):
    name = "images"

    def __init__(self) -> None:
        self.handler = _ImageHandler
        self.counter: Counter[str] = Counter()
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list] = {}  # name -> [kind, after, remaining, reached event]
        self.inflight = self.max_inflight = 0  # concurrent /slow requests, to check per-host limits
        super().__init__()

    def hits(self, path: str) -> int:
        with self.lock:
            return self.counter[path]

    def add_file(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return f"{self.url}/files/{name}"

    def fault(self, name: str, kind: str, after: int, times: int = 1) -> threading.Event:
        """The next `times` GETs of /files/<name> `drop` or `stall` after `after` body bytes."""
        reached = threading.Event()
        self.faults[name] = [kind, after, times, reached]
        return reached


class _ImageHandler(QuietHandler):
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        server: ImageServer = self.owner
        server.record(self)
        path = urlsplit(self.path).path
        with server.lock:
            server.counter[path] += 1
            hits = server.counter[path]
        parts = [unquote(p) for p in path.strip("/").split("/")]
        route, args = parts[0], parts[1:]
        handler = getattr(self, f"route_{route}", None)
        if handler is None:
            self.send_status(404, "no such route")
            return
        handler(server, args, hits)

    def _image(self, name: str = "x.jpg", headers: dict[str, str] | None = None) -> None:
        fmt = "PNG" if name.endswith(".png") else "JPEG"
        self.send_bytes(make_image(name, fmt), content_type=f"image/{fmt.lower()}", headers=headers)

    def route_img(self, server, args, hits) -> None:
        self._image(args[0])

    def route_status(self, server, args, hits) -> None:
        self.send_status(int(args[0]), f"status {args[0]}")

    def route_flaky(self, server, args, hits) -> None:
        if hits <= int(args[0]):
            self.send_status(500, "temporarily broken")
        else:
            self._image(args[1] + ".jpg")

    def route_ratelimit(self, server, args, hits) -> None:
        if hits == 1:
            self.send_status(429, "slow down", headers={"Retry-After": args[0]})
        else:
            self._image(args[1] + ".jpg")

    def route_slow(self, server, args, hits) -> None:
        with server.lock:
            server.inflight += 1
            server.max_inflight = max(server.max_inflight, server.inflight)
        try:
            if server.closing.wait(float(args[0])):
                self.close_connection = True  # hang up, so a client still waiting is released now
                return
            self._image("slow.jpg")
        finally:
            with server.lock:
                server.inflight -= 1

    def route_drip(self, server, args, hits) -> None:
        body = (make_image("drip.jpg") * 50)[: int(args[0])]
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(len(body)):
            if server.closing.wait(0.1):
                self.close_connection = True
                return
            try:
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
            except OSError:
                return

    def route_truncated(self, server, args, hits) -> None:
        body = make_image("truncated.jpg")[:100]
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", "5000")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def route_html(self, server, args, hits) -> None:
        page = b"<!DOCTYPE html><html><body><h1>Image not found</h1></body></html>"
        self.send_bytes(page, content_type="text/html; charset=utf-8")

    def route_big(self, server, args, hits) -> None:
        self.send_bytes(b"\xff\xd8\xff\xe0" + bytes(int(args[0]) - 4), content_type="image/jpeg")

    def route_bigchunked(self, server, args, hits) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        block = b"\xff\xd8\xff\xe0" + bytes(65532)
        try:
            for _ in range(int(args[0]) // len(block) + 1):
                self.wfile.write(block)
        except OSError:
            pass

    def route_loop(self, server, args, hits) -> None:
        target = "b" if args[0] == "a" else "a"
        self.send_bytes(b"", status=302, headers={"Location": f"/loop/{target}"})

    def route_redirect(self, server, args, hits) -> None:
        left = int(args[0])
        target = f"/redirect/{left - 1}/{args[1]}" if left > 1 else f"/img/{args[1]}"
        self.send_bytes(b"", status=301, headers={"Location": target})

    def route_robots(self, server, args, hits) -> None:
        self._image("robots.jpg", headers={"X-Robots-Tag": args[0]})

    def route_files(self, server, args, hits) -> None:
        name = "/".join(args)
        data = server.files.get(name)
        if data is None:
            self.send_status(404, "no such file")
            return
        drop = stall = None
        with server.lock:
            fault = server.faults.get(name)
            if fault and self.command == "GET" and fault[2] > 0:
                fault[2] -= 1
                drop, stall = (fault[1], None) if fault[0] == "drop" else (None, fault[1])
                fault[3].set()
        self.send_bytes(data, headers={"ETag": f"\"{hashlib.md5(data).hexdigest()}\"",
                                       "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"},
                        ranges=True, drop_after=drop, stall_after=stall)


def wait_until(predicate, timeout: float = 10.0, step: float = 0.02) -> bool:
    """Poll `predicate` until true or `timeout` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
