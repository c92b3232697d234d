"""One build per data root at a time.

Two builds of one data root write the same files (a plan, a shard, an index) and would interleave them,
so `imp-data build` holds an exclusive lock, `DATA/.imp-data/build.lock`, for its whole run. The lock is
an flock (`fcntl`: POSIX systems): the kernel drops it when its holder exits or is killed, so a crashed
build never leaves a stale lock behind. Right after acquiring, the holder writes who it is (pid, host,
start, command) to `build.lock.owner`, so a second build can say whom it is waiting for.

Dagster runs share the data root among themselves (their steps write disjoint units), so they hold the
same lock *shared* (`share_build_lock`, for as long as the run's or step's resources live), each saying
who it is in `build.lock.users/<pid>.json`. A command-line build is then refused while a Dagster run
works on the data root, and a Dagster run while a command-line build does.

A data root in object storage is locked through its local cache directory: that keeps two builds on one
machine apart, not builds on two machines (a bucket has no lock; run one builder per remote root).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imp_data.core.errors import BuildLocked
from imp_data.core.io import write_json_atomic

LOCK_DIR = ".imp-data"
LOCK_NAME = "build.lock"
OWNER_NAME = "build.lock.owner"
USERS_NAME = "build.lock.users"  # one file per process holding the lock shared (a Dagster run or step)
BUILD_DIRS = ("raw", "normalized", "rejects", "mixes")  # what a build writes: where it sweeps stale temps

_held: set[Path] = set()  # lock files this process holds: its own checks must not refuse it


def lock_path(data_root: str | os.PathLike) -> Path:
    return Path(data_root) / LOCK_DIR / LOCK_NAME


def _owner_path(lock: Path) -> Path:
    return lock.with_name(OWNER_NAME)


def _describe(path: Path) -> str | None:
    """'pid 123 on host h, started 2025-01-01T10:00:00+00:00: imp-data build …', from an owner file."""
    try:
        owner = json.loads(path.read_text())
        command = " ".join(str(owner["command"]).split())  # one line, whatever the arguments held
        return f"pid {owner['pid']} on {owner['host']}, started {owner['started']}: {command}"
    except (OSError, ValueError, KeyError, TypeError):  # not yet written (it just started) or unreadable
        return None


def describe_holder(lock: Path) -> str:
    """Who holds the lock: the exclusive holder's owner file, else the shared holders' (Dagster)."""
    owner = _describe(_owner_path(lock))
    if owner is not None:
        return owner
    users = sorted(lock.with_name(USERS_NAME).glob("*.json")) if lock.with_name(USERS_NAME).is_dir() else []
    shared = [d for d in map(_describe, users) if d is not None]
    if shared:
        return f"Dagster is working on it: {'; '.join(shared[:3])}" + (" …" if len(shared) > 3 else "")
    return "holder unknown: it has just started or is finishing"


def _locked_error(lock: Path) -> BuildLocked:
    return BuildLocked(f"{lock}: another build of this data root is running ({describe_holder(lock)}) — "
                       "wait for it to finish, or stop it")


def current_command() -> str:
    """This process's command line, as the owner file records it."""
    name = "imp-data" if sys.argv and sys.argv[0].endswith(("cli.py", "imp-data")) else Path(sys.executable).name
    return shlex.join([name, *sys.argv[1:]])


def _flock(lock_file: Path, mode: int) -> int | None:
    """An fd holding `lock_file` in `mode` (LOCK_SH or LOCK_EX), or None when another process's lock
    conflicts. Never waits."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def hold_build_lock(data_root: str | os.PathLike, command: str | None = None) -> Iterator[Path]:
    """Hold the data root's build lock for the block; yield the lock file's path.

    Never waits: raises `BuildLocked` (one line: lock file, holder's pid, host, start, command, and what
    to do) when another process holds it. `command` is what the owner file records (default: this
    process's command line).
    """
    lock_file = lock_path(data_root)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = _flock(lock_file, fcntl.LOCK_EX)
    if fd is None:
        raise _locked_error(lock_file)
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
        _unlock(fd)


def build_running(data_root: str | os.PathLike) -> str | None:
    """Who runs `imp-data build` on the data root ('pid … on …'), or None when no other process does.

    Tries the lock shared and lets go at once: never blocks, and Dagster runs sharing it do not count.
    """
    lock_file = lock_path(data_root)
    if not lock_file.is_file() or lock_file.resolve() in _held:
        return None  # never locked here, or held by this very process
    fd = _flock(lock_file, fcntl.LOCK_SH)
    if fd is None:
        return describe_holder(lock_file)
    _unlock(fd)
    return None


def refuse_if_building(data_root: str | os.PathLike) -> None:
    """Raise `BuildLocked` (the same one-line message a second build gets) while another build runs."""
    if build_running(data_root) is not None:
        raise _locked_error(lock_path(data_root))


@contextmanager
def share_build_lock(data_root: str | os.PathLike, command: str | None = None) -> Iterator[Path]:
    """Hold the data root's build lock shared for the block (what a Dagster run or step does): any number
    of sharers work together, and `imp-data build` is refused meanwhile. Raises `BuildLocked`, naming
    the holder, while a command-line build holds it."""
    lock_file = lock_path(data_root)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    if lock_file.resolve() in _held:  # this process runs the build itself
        yield lock_file
        return
    fd = _flock(lock_file, fcntl.LOCK_SH)
    if fd is None:
        raise _locked_error(lock_file)
    user = lock_file.with_name(USERS_NAME) / f"{os.getpid()}-{secrets.token_hex(4)}.json"
    try:
        write_json_atomic(user, {"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                 "command": command or current_command()})
        yield lock_file
    finally:
        user.unlink(missing_ok=True)  # before the release, as the owner file
        _unlock(fd)
