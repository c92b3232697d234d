"""One build per data root at a time.

Two builds of one data root write the same files (a plan, a shard, an index) and would interleave them,
so `imp-data build` holds an exclusive lock, `DATA/.imp-data/build.lock`, for its whole run. The lock is
an fcntl lock (`filelock`): the kernel drops it when its holder exits or is killed, so a crashed build
never leaves a stale lock behind. Right after acquiring, the holder writes who it is (pid, host, start,
command) to `build.lock.owner`, so a second build can say whom it is waiting for. Dagster steps call
`refuse_if_building` to stay out while a command-line build runs.

A data root in object storage is locked through its local cache directory: that keeps two builds on one
machine apart, not builds on two machines (a bucket has no lock; run one builder per remote root).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from imp_data.core.errors import BuildLocked
from imp_data.core.io import write_json_atomic

LOCK_DIR = ".imp-data"
LOCK_NAME = "build.lock"
OWNER_NAME = "build.lock.owner"
BUILD_DIRS = ("raw", "normalized", "rejects", "mixes")  # what a build writes: where it sweeps stale temps

_held: set[Path] = set()  # lock files this process holds: its own checks must not refuse it


def lock_path(data_root: str | os.PathLike) -> Path:
    return Path(data_root) / LOCK_DIR / LOCK_NAME


def _owner_path(lock: Path) -> Path:
    return lock.with_name(OWNER_NAME)


def _new_lock(lock: Path) -> FileLock:
    """A native (flock) lock; no soft fallback, whose marker would outlive a killed holder."""
    try:
        return FileLock(lock, fallback_to_soft=False)
    except TypeError:  # filelock < 4 has no soft fallback to turn off
        return FileLock(lock)


def describe_holder(lock: Path) -> str:
    """'pid 123 on host h, started 2025-01-01T10:00:00+00:00: imp-data build …', from the owner file."""
    try:
        owner = json.loads(_owner_path(lock).read_text())
        command = " ".join(str(owner["command"]).split())  # one line, whatever the arguments held
        return f"pid {owner['pid']} on {owner['host']}, started {owner['started']}: {command}"
    except (OSError, ValueError, KeyError, TypeError):  # not yet written (it just started) or unreadable
        return "holder unknown: it has just started or is finishing"


def _locked_error(lock: Path) -> BuildLocked:
    return BuildLocked(f"{lock}: another build of this data root is running ({describe_holder(lock)}) — "
                       "wait for it to finish, or stop it")


def current_command() -> str:
    """This process's command line, as the owner file records it."""
    name = "imp-data" if sys.argv and sys.argv[0].endswith(("cli.py", "imp-data")) else Path(sys.executable).name
    return shlex.join([name, *sys.argv[1:]])


@contextmanager
def hold_build_lock(data_root: str | os.PathLike, command: str | None = None) -> Iterator[Path]:
    """Hold the data root's build lock for the block; yield the lock file's path.

    Never waits: raises `BuildLocked` (one line: lock file, holder's pid, host, start, command, and what
    to do) when another process holds it. `command` is what the owner file records (default: this
    process's command line).
    """
    lock_file = lock_path(data_root)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = _new_lock(lock_file)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        raise _locked_error(lock_file) from None
    key = lock_file.resolve()
    _held.add(key)
    try:
        write_json_atomic(_owner_path(lock_file), {
            "pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command or current_command()})
        yield lock_file
    finally:
        _held.discard(key)
        _owner_path(lock_file).unlink(missing_ok=True)  # before the release: a new holder's file stays
        lock.release()


def build_running(data_root: str | os.PathLike) -> str | None:
    """Who holds the data root's build lock ('pid … on …'), or None when no other process does.

    Tries the lock and lets go at once, so it never blocks a build for longer than the try.
    """
    lock_file = lock_path(data_root)
    if not lock_file.is_file() or lock_file.resolve() in _held:
        return None  # never locked here, or held by this very process
    lock = _new_lock(lock_file)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return describe_holder(lock_file)
    lock.release()
    return None


def refuse_if_building(data_root: str | os.PathLike) -> None:
    """Raise `BuildLocked` (the same one-line message a second build gets) while another build runs."""
    if build_running(data_root) is not None:
        raise _locked_error(lock_path(data_root))
