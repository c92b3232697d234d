"""Progress bars as a user at a terminal sees them: the URL downloader against the loopback image server,
with stderr on a real pseudo-terminal and IMP_DATA_PROGRESS unset, draws a tqdm bar that shows the count,
a rate (img/s) and an ETA (`elapsed<remaining`) while it runs. Everywhere else tests keep bars off.

Run: pytest tests/test_progress.py   (about 2 s)
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import sys
import termios

from imp_data.fetch.http import DownloadConfig, download_images
from tests.servers.image_server import ImageServer

N = 12
FRAME = re.compile(rf"download raw: +(\d+)%\|[^|\r\n]*\| (\d+)/{N} \[(\d\d:\d\d)<(\d\d:\d\d|\?), +([\d.]+|\?)img/s")


def read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):  # drained (Linux reports EIO once the other side is closed)
            break
        if not chunk:
            break
        out += chunk
    return out.decode()


def test_download_bar_shows_rate_and_eta_on_a_terminal(tmp_path, monkeypatch):
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a pty starts 0 columns wide
    terminal = open(slave, "w", buffering=1)
    monkeypatch.delenv("IMP_DATA_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", terminal)  # tqdm draws on sys.stderr, and only when it is a TTY
    try:
        with ImageServer() as server:  # 12 answers of 0.25 s, two at a time: ~1.5 s, past tqdm's 0.5 s refresh
            summary = download_images([f"{server.url}/slow/0.25/{i}" for i in range(N)], tmp_path / "raw",
                                      config=DownloadConfig(concurrency=2, per_host=2), progress=True)
        terminal.flush()
        screen = read_all(master)
    finally:
        terminal.close()
        os.close(master)
    assert summary["ok"] == N
    frames = [m.groups() for m in FRAME.finditer(screen)]
    assert frames, f"no tqdm bar on the terminal: {screen!r}"
    running = [f for f in frames if 0 < int(f[1]) < N]
    assert running, f"no frame drawn mid-run: {screen!r}"
    assert all(eta != "?" and rate != "?" for _, _, _, eta, rate in running), running  # rate and ETA while running
    assert frames[-1][:2] == ("100", str(N)) and float(frames[-1][4]) > 0, frames[-1]
