"""What every stage output was made from: fingerprints, stamps and the file-hash cache.

A build is a chain of units (a source's normalized table, a mix's selection, each render, the plan, each
shard, the index, the report). Each unit's fingerprint is a sha256 over what shapes it: the stage's code
version, the recipe fields that stage reads, and its inputs' identity (the fingerprints of the units it
reads, the content hashes of the files it reads). A unit is reused when, and only when, its fingerprint
and its output files are what its stamp recorded; otherwise it is redone.

Content hashes of input files (annotation files, images, archives, benchmark folders) are cached by
(size, mtime, inode) in a small SQLite table under `DATA/.imp-data/`, so an unchanged rebuild stats files
instead of reading them, while fingerprints themselves depend on content only: two machines building
the same inputs write the same stamps. The cache is machine-local state, never an output (docs: the
"How rebuilds work" section of README.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from imp_data.core.io import dumps_canonical, file_sha256, write_json_atomic

# Bump a stage's version when a change in its code changes the bytes it writes: every unit of that stage
# (and what is made from it) is then redone on the next build, and Dagster shows those assets stale.
CODE_VERSIONS = {
    "fetch": "1",
    "normalize": "1",
    "download": "1",
    "select": "1",
    "render": "2",  # 2: expand2square shrinks sides over 8192 px first; reject details without addresses
    "dedup": "1",
    "plan": "1",
    "shards": "2",  # 2: KEY.json meta is a JSON string (typed readers keep every field)
    "finalize": "1",
    "report": "1",
}


def digest(obj: Any) -> str:
    """sha256 hex of an object's canonical JSON: the fingerprint of anything JSON-shaped.

    Example:
        >>> digest({"b": 1, "a": [1, 2]}) == digest({"a": [1, 2], "b": 1})
        True
    """
    return hashlib.sha256(dumps_canonical(obj).encode("utf-8")).hexdigest()


def stage_fingerprint(stage: str, **inputs: Any) -> str:
    """The fingerprint of one unit of `stage`: its code version plus everything it is made from."""
    return digest({"stage": stage, "code": CODE_VERSIONS[stage], "inputs": inputs})


class FileHashes:
    """sha256 of files, cached by (size, mtime_ns, inode): a file is read again only when it changed.

    One SQLite table per data root, safe across the build's worker processes (WAL, busy timeout). Any
    problem with the cache itself (read-only root, corrupt database) falls back to hashing the file.
    """

    def __init__(self, db_path: Path | None):
        self.db_path = db_path
        self._local = threading.local()

    def __getstate__(self) -> dict:  # connections do not cross process boundaries
        return {"db_path": self.db_path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["db_path"])

    def _db(self) -> sqlite3.Connection | None:
        if self.db_path is None:
            return None
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            try:
                self.db_path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # a cache: no fsync per insert (a power cut only forgets)
                conn.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
                             "mtime_ns INTEGER, inode INTEGER, sha256 TEXT)")
            except sqlite3.Error:
                conn = None
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def sha256(self, path: str | Path) -> str:
        """Content hash of `path` (OSError if it cannot be read)."""
        key = os.path.abspath(path)
        st = os.stat(key)
        db = self._db()
        if db is not None:
            try:
                row = db.execute("SELECT size, mtime_ns, inode, sha256 FROM files WHERE path = ?", (key,)).fetchone()
            except sqlite3.Error:
                row = None
            if row is not None and tuple(row[:3]) == (st.st_size, st.st_mtime_ns, st.st_ino):
                return row[3]
        value = file_sha256(key)
        self.remember(key, value, st)
        return value

    def remember(self, path: str | Path, value: str, st: os.stat_result | None = None) -> None:
        """Record a hash computed elsewhere (a file just written whose bytes were hashed on the way out)."""
        db = self._db()
        if db is None:
            return
        key = os.path.abspath(path)
        st = st or os.stat(key)
        try:
            db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                       (key, st.st_size, st.st_mtime_ns, st.st_ino, value))
        except sqlite3.Error:
            pass


def tree_identity(path: Path, hashes: FileHashes) -> list:
    """Content identity of a file or folder: [(relative path, sha256)] of every file under it, sorted."""
    if path.is_file():
        return [[path.name, hashes.sha256(path)]]
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return [[p.relative_to(path).as_posix(), hashes.sha256(p)] for p in files]


# ---- stamps: a unit's fingerprint plus the hashes of the files it wrote ------------------------------


def read_stamp(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stamp_holds(path: Path, fingerprint: str, hashes: FileHashes, root: Path) -> bool:
    """True when the stamp at `path` records `fingerprint` and every output it lists is still there with
    the same content (so a deleted or hand-edited output is redone, not trusted)."""
    stamp = read_stamp(path)
    if not stamp or stamp.get("fingerprint") != fingerprint:
        return False
    try:
        return all(hashes.sha256(root / rel) == sha for rel, sha in stamp.get("outputs", {}).items())
    except OSError:
        return False


def write_stamp(path: Path, fingerprint: str, outputs: list[Path], hashes: FileHashes, root: Path,
                **about: Any) -> dict:
    """Record that `outputs` were made from `fingerprint` (written after the outputs, so a crash in
    between only means the unit is redone)."""
    stamp = {"fingerprint": fingerprint, **about,
             "outputs": {p.relative_to(root).as_posix(): hashes.sha256(p) for p in outputs if p.is_file()}}
    write_json_atomic(path, stamp)
    return stamp
