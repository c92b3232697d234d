"""The test network guard: no test, and no Python process a test starts, reaches past loopback.

One implementation with two ways in. `tests/conftest.py` activates a `NetworkGuard` in the pytest process for
the whole session and puts this folder on PYTHONPATH, so `sitecustomize.py` beside this file installs one at
startup of every Python subprocess (the CLI, `dagster dev` and its code server, DDP workers, moto).

Allowed: loopback IPv4/IPv6 (127.0.0.0/8, ::1), the unspecified bind addresses (0.0.0.0, ::), the names
`localhost`, `localhost.localdomain` and `ip6-localhost`, and every non-IP socket family (AF_UNIX, netlink).
Anything else raises an OSError naming the address, of the kind a client expects from the real failure:
`ConnectionRefusedError("test network guard: non-loopback access refused (connect 192.0.2.1:80)")` from
`connect`, `connect_ex` and `sendto`; `socket.gaierror("... (resolve example.com:443)")` from `getaddrinfo`
of a name (a numeric IP is left for `connect` to refuse). Code under test may swallow that, so each refusal
is also recorded: in `violations`, and as a line appended to the file named by $IMP_NETGUARD_LOG; the
per-test fixture in tests/conftest.py fails the test on either.

This is a top-level module, not part of the `tests` package, because subprocesses import it from PYTHONPATH
without the repository on sys.path.
"""

from __future__ import annotations

import ipaddress
import os
import socket

LOG_ENV = "IMP_NETGUARD_LOG"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
_INET = (socket.AF_INET, socket.AF_INET6)


def is_loopback(host) -> bool:
    """Whether `host` (name, IP string or bytes; None or "" = unspecified) stays on this machine.

    Example:
        >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost", None, "192.0.2.1", "example.com")]
        [True, True, True, True, True, False, False]
    """
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host or "").strip("[]").lower()
    if not host or host in LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])  # drop an IPv6 zone ("fe80::1%eth0")
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _is_ip(host) -> bool:
    try:
        ipaddress.ip_address(str(host).strip("[]").split("%")[0])
        return True
    except ValueError:
        return False


class NetworkGuard:
    """While active, refuse (and record) DNS lookups and connections beyond loopback.

    Guards nest: an inner guard sees (and records) refusals first, so a test that provokes one on purpose
    wraps it in its own `with NetworkGuard() as guard:` and the session guard stays clean.
    """

    def __init__(self, log_path: str | os.PathLike | None = None) -> None:
        self.violations: list[str] = []
        self.log_path = log_path
        self._saved: list[tuple[object, str, object]] = []

    def _refuse(self, what: str) -> ConnectionRefusedError:
        self.violations.append(what)
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as log:  # one short O_APPEND write per refusal
                log.write(f"pid {os.getpid()}: {what}\n")
        return ConnectionRefusedError(f"test network guard: non-loopback access refused ({what})")

    def _check(self, sock, address, verb: str) -> None:
        if sock.family in _INET and isinstance(address, tuple) and not is_loopback(address[0]):
            raise self._refuse(f"{verb} {address[0]}:{address[1]}")

    def __enter__(self) -> NetworkGuard:
        real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
        real_sendto, real_getaddrinfo = socket.socket.sendto, socket.getaddrinfo
        guard = self

        def connect(sock, address):
            guard._check(sock, address, "connect")
            return real_connect(sock, address)

        def connect_ex(sock, address):
            guard._check(sock, address, "connect")
            return real_connect_ex(sock, address)

        def sendto(sock, data, *args):  # sendto(data, address) or sendto(data, flags, address)
            guard._check(sock, args[-1], "sendto")
            return real_sendto(sock, data, *args)

        def getaddrinfo(host, port=None, *args, **kwargs):
            # A numeric IP needs no lookup: let connect() refuse it, naming the address it was meant for.
            if not is_loopback(host) and not _is_ip(host):
                raise socket.gaierror(socket.EAI_NONAME, str(guard._refuse(f"resolve {host}:{port}")))
            return real_getaddrinfo(host, port, *args, **kwargs)

        for owner, name, new in ((socket.socket, "connect", connect), (socket.socket, "connect_ex", connect_ex),
                                 (socket.socket, "sendto", sendto), (socket, "getaddrinfo", getaddrinfo)):
            self._saved.append((owner, name, getattr(owner, name)))
            setattr(owner, name, new)
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, old in reversed(self._saved):
            setattr(owner, name, old)
        self._saved.clear()


def install_from_env() -> NetworkGuard:
    """Activate a guard for the rest of this process, logging to $IMP_NETGUARD_LOG (what sitecustomize calls)."""
    return NetworkGuard(os.environ.get(LOG_ENV)).__enter__()
