"""The network guard (tests/netguard/): active for every test without an import, and in every Python
subprocess a test starts (through PYTHONPATH's sitecustomize); loopback, `localhost` and AF_UNIX pass,
anything else fails with the guard's error naming the address, and is logged even when swallowed.

Run: pytest tests/test_netguard.py   (about 3 s; the only address tried is TEST-NET 192.0.2.1, refused locally)
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import NETGUARD_DIR, netguard
from tests.servers.image_server import ImageServer

REFUSED = "test network guard: non-loopback access refused (connect 192.0.2.1:80)"
CONNECT = "import socket; socket.create_connection(('192.0.2.1', 80), timeout=5)"


def test_in_process_refusals_name_the_address():
    with netguard.NetworkGuard() as guard:  # nested: records these on purpose, the session guard stays clean
        with pytest.raises(ConnectionRefusedError, match=r"\(connect 192\.0\.2\.1:80\)$"):
            socket.create_connection(("192.0.2.1", 80), timeout=5)
        with socket.socket(socket.AF_INET6) as s, pytest.raises(ConnectionRefusedError, match=r"2001:db8::1:443"):
            s.connect_ex(("2001:db8::1", 443, 0, 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(ConnectionRefusedError,
                                                                                 match=r"sendto 192\.0\.2\.1:53"):
            s.sendto(b"x", ("192.0.2.1", 53))
        with pytest.raises(socket.gaierror, match=r"\(resolve example\.com:443\)"):
            socket.getaddrinfo("example.com", 443)
    assert guard.violations == ["connect 192.0.2.1:80", "connect 2001:db8::1:443", "sendto 192.0.2.1:53",
                                "resolve example.com:443"]


def test_the_session_guard_is_on_without_any_import(network_watch):
    assert not hasattr(sys.modules[__name__], "no_external_network")  # nothing imported: conftest's autouse
    with pytest.raises(ConnectionRefusedError, match=r"192\.0\.2\.1:80"):
        socket.create_connection(("192.0.2.1", 80), timeout=5)
    assert network_watch.new_refusals() == ["connect 192.0.2.1:80"]  # consumed here: this test stays green


def test_loopback_localhost_and_unix_sockets_pass():
    with ImageServer() as server:
        port = server.httpd.server_address[1]
        for host in ("127.0.0.1", "localhost"):
            with urllib.request.urlopen(f"http://{host}:{port}/img/a.jpg", timeout=5) as reply:
                assert reply.status == 200
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        a.sendall(b"ok")
        assert b.recv(2) == b"ok"


def test_a_subprocess_carries_the_guard(tmp_path):
    assert str(NETGUARD_DIR) in os.environ["PYTHONPATH"].split(os.pathsep)
    log = tmp_path / "netguard.log"
    env = {**os.environ, netguard.LOG_ENV: str(log)}  # its own log, so this test's provoked refusals stay here
    out = subprocess.run([sys.executable, "-c", CONNECT], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and f"ConnectionRefusedError: {REFUSED}" in out.stderr, out.stderr
    # a client that swallows the error still leaves its trace in the log the per-test fixture reads
    swallow = f"try:\n    {CONNECT}\nexcept OSError:\n    pass\nprint('swallowed')"
    out = subprocess.run([sys.executable, "-c", swallow], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "swallowed", out.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and all(line.endswith(": connect 192.0.2.1:80") for line in lines), lines


def _connect_in_worker(_) -> str:
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=5)
    except OSError as err:
        return str(err)
    return "connected"


def test_spawned_workers_carry_the_guard(tmp_path, monkeypatch):
    monkeypatch.setenv(netguard.LOG_ENV, str(tmp_path / "netguard.log"))  # workers inherit it
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # how torch and DataLoader workers start
        assert pool.map(_connect_in_worker, [0]) == [REFUSED]
    assert (tmp_path / "netguard.log").read_text().endswith(": connect 192.0.2.1:80\n")
