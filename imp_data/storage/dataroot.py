"""A data root in object storage (`s3://bucket/imp`, any fsspec URL), worked on through a local cache.

Stages write Parquet, tar and JPEG files, and decoders want seekable local files, so a remote data root
is mirrored rather than opened in place. Before a stage runs, the *units* it reads are pulled into the
cache; after it succeeds, the units it wrote are pushed (`imp_data.storage.sync` says which). A unit is a
named set of files under the root (a source's normalized tables, a mix's plan, one shard) with a ledger
`_ledger/<unit>.json` listing each file's size and sha256.

- Every object is one PUT (atomic on S3) and a unit's ledger is written after its files, so a reader
  that finds a ledger finds every file it lists; each pulled file is checked against its hash.
- A push cut off midway is finished by the rerun, which skips files the ledger already holds.
- Each shard is a unit of its own: pods writing different shards never write the same object.
- Bulk files (the render cache, one JPEG per sample) go up before their unit's ledger but are not
  listed in it, since a million entries would make the ledger the bottleneck. They are pulled by name,
  just the ones a shard needs.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from imp_data.core.errors import ImpDataError
from imp_data.core.io import file_sha256, tmp_path_for, write_json_atomic
from imp_data.core.locations import is_url, local_path

LEDGER_DIR = "_ledger"
SYNC_DIR = ".imp-sync"  # in the cache: each unit's ledger as last pushed or pulled, with local mtimes
IN_FLIGHT = (".tmp", ".incomplete", ".incomplete.json")  # partial files: never pushed


def default_cache(url: str) -> Path:
    """$IMP_DATA_CACHE (default ~/.cache/imp-data)/<readable slug>-<hash>: one cache per remote root."""
    base = Path(os.environ.get("IMP_DATA_CACHE", "~/.cache/imp-data")).expanduser()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[1]).strip("_")[:80]
    return base / f"{slug}-{hashlib.sha1(url.encode()).hexdigest()[:8]}"


def open_data_root(root: str | os.PathLike, cache: str | os.PathLike | None = None) -> tuple[Path, RemoteRoot | None]:
    """(local directory the stages work in, the remote root or None). A path is its own local directory;
    a URL works through `cache` (default: `default_cache(url)`)."""
    if not is_url(root):
        return local_path(root).resolve(), None
    url = str(root).rstrip("/")
    local = Path(cache).expanduser().resolve() if cache else default_cache(url)
    local.mkdir(parents=True, exist_ok=True)
    return local, RemoteRoot(url, local)


class RemoteRoot:
    """Push and pull units between the remote root `url` and the local `cache` directory."""

    def __init__(self, url: str, cache: Path):
        self.url, self.cache = url.rstrip("/"), Path(cache)

    def __repr__(self) -> str:
        return f"RemoteRoot({self.url!r}, cache={str(self.cache)!r})"

    def __getstate__(self) -> dict:  # picklable for worker processes: the filesystem is opened again there
        return {"url": self.url, "cache": self.cache}

    def __setstate__(self, state: dict) -> None:
        self.url, self.cache = state["url"], state["cache"]

    @cached_property
    def _fs(self):
        import fsspec

        return fsspec.core.url_to_fs(self.url)

    @property
    def fs(self):
        return self._fs[0]

    def key(self, rel: str) -> str:
        """The object path (in `fs`'s terms) of a path relative to the root."""
        return f"{self._fs[1]}/{rel}"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the cache, for processes of one machine that pull the same units."""
        path = self.cache / SYNC_DIR / "lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ---- ledgers -----------------------------------------------------------------------------------

    def _local_ledger_path(self, unit: str) -> Path:
        return self.cache / SYNC_DIR / f"{unit}.json"

    def _local_ledger(self, unit: str) -> dict:
        path = self._local_ledger_path(unit)
        return json.loads(path.read_text())["files"] if path.is_file() else {}

    def remote_ledger(self, unit: str) -> dict | None:
        """{rel: {"size", "sha256"}} of the unit as last pushed, or None when it was never pushed."""
        try:
            return json.loads(self.fs.cat_file(self.key(f"{LEDGER_DIR}/{unit}.json")))["files"]
        except FileNotFoundError:
            return None

    def _hash(self, rel: str, known: dict) -> dict:
        """{"size", "sha256", "mtime_ns"} of a cached file, reusing the known hash when size and mtime agree."""
        st = (self.cache / rel).stat()
        entry = known.get(rel)
        if entry and entry["size"] == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            return entry
        return {"size": st.st_size, "sha256": file_sha256(self.cache / rel), "mtime_ns": st.st_mtime_ns}

    def _rel(self, path: Path) -> str:
        try:
            return Path(path).resolve().relative_to(self.cache).as_posix()
        except ValueError:
            raise ImpDataError(f"{path}: outside the data root's cache {self.cache}; "
                               "only files under it sync") from None

    # ---- push --------------------------------------------------------------------------------------

    def push(self, unit: str, files: Iterable[Path], bulk: Iterable[Path] = ()) -> dict:
        """Upload the unit's changed files, then its bulk directories' missing files, then its ledger.
        Missing and in-flight files are left out. Returns {"uploaded": n, "skipped": n}."""
        known = self._local_ledger(unit)
        rels = sorted({self._rel(p) for p in files if Path(p).is_file() and not Path(p).name.endswith(IN_FLIGHT)})
        local = {rel: self._hash(rel, known) for rel in rels}
        remote = self.remote_ledger(unit) or {}
        plain = {rel: {"size": e["size"], "sha256": e["sha256"]} for rel, e in local.items()}
        changed = [rel for rel in rels if remote.get(rel) != plain[rel]]
        todo = changed + [rel for d in bulk for rel in self._missing_bulk(Path(d))]
        self._put(todo)
        if changed or remote != plain:
            self.fs.pipe_file(self.key(f"{LEDGER_DIR}/{unit}.json"),
                              json.dumps({"unit": unit, "files": plain}, indent=1, sort_keys=True).encode())
        write_json_atomic(self._local_ledger_path(unit), {"unit": unit, "files": local})
        return {"uploaded": len(todo), "skipped": len(rels) - len(changed)}

    def _missing_bulk(self, directory: Path) -> list[str]:
        """Files under a local bulk directory whose object is missing or of another size."""
        if not directory.is_dir():
            return []
        prefix = self._rel(directory)
        try:
            listed = self.fs.find(self.key(prefix), detail=True)
        except FileNotFoundError:
            listed = {}
        sizes = {name.rsplit(f"/{prefix}/", 1)[-1]: info.get("size") for name, info in listed.items()}
        out = []
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.name.endswith(IN_FLIGHT):
                sub = path.relative_to(directory).as_posix()
                if sizes.get(sub) != path.stat().st_size:
                    out.append(f"{prefix}/{sub}")
        return out

    def _put(self, rels: list[str]) -> None:
        if rels:  # one batched call: s3fs sends the PUTs concurrently
            self.fs.put([str(self.cache / r) for r in rels], [self.key(r) for r in rels])

    # ---- pull --------------------------------------------------------------------------------------

    def pull(self, unit: str, match: Callable[[str], bool] | None = None) -> int:
        """Download the unit's files (those `match` accepts) that the cache lacks or holds in another
        version; verify each against the ledger. A unit never pushed pulls nothing. Returns the count."""
        ledger = self.remote_ledger(unit)
        if ledger is None:
            return 0
        known = self._local_ledger(unit)
        wanted = {rel: e for rel, e in ledger.items() if match is None or match(rel)}
        have = {}
        for rel, entry in wanted.items():
            if (self.cache / rel).is_file() and (self.cache / rel).stat().st_size == entry["size"]:
                local = self._hash(rel, known)
                if local["sha256"] == entry["sha256"]:
                    have[rel] = local
        todo = sorted(set(wanted) - set(have))
        self._get(todo)
        for rel in todo:
            local = self._hash(rel, {})
            if local["sha256"] != wanted[rel]["sha256"]:
                (self.cache / rel).unlink()
                raise ImpDataError(f"{self.url}/{rel}: does not match its ledger {LEDGER_DIR}/{unit}.json (a push was "
                                   "cut off while rewriting it) — rerun the stage that writes it")
            have[rel] = local
        write_json_atomic(self._local_ledger_path(unit), {"unit": unit, "files": {**known, **have}})
        return len(todo)

    def pull_files(self, rels: Iterable[str], what: str = "file") -> int:
        """Download the named files (bulk files, e.g. rendered JPEGs) that the cache lacks."""
        todo = sorted({r for r in rels if not (self.cache / r).is_file()})
        try:
            self._get(todo)
        except FileNotFoundError as err:
            raise ImpDataError(f"{self.url}: {what} missing from the data root ({err}) — rerun the stage that "
                               "writes it") from None
        return len(todo)

    def pull_tree(self, rel: str) -> int:
        """Download a file or folder placed under the root by hand (e.g. a mirror of the sources): every
        object missing from the cache or of another size. A glob pulls the folder above its first
        wildcard. Returns how many objects it holds."""
        parts = Path(rel).parts
        fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
        rel = Path(*parts[:fixed]).as_posix() if fixed else ""
        key = self.key(rel).rstrip("/")
        try:
            listed = self.fs.find(key, detail=True)
        except FileNotFoundError:
            listed = {}
        if not listed and self.fs.isfile(key):
            listed = {key: self.fs.info(key)}
        bare = key.split("://", 1)[-1]
        subs = {"/".join(x for x in (rel, name.split("://", 1)[-1][len(bare):].lstrip("/")) if x): info.get("size")
                for name, info in listed.items()}
        todo = [r for r, size in sorted(subs.items())
                if not (self.cache / r).is_file() or (self.cache / r).stat().st_size != size]
        self._get(todo)
        return len(subs)

    def _get(self, rels: list[str]) -> None:
        """Fetch objects into temp siblings, then rename: a cut-off download never sits under its name."""
        if not rels:
            return
        tmps = [tmp_path_for(self.cache / r) for r in rels]
        for tmp in tmps:
            tmp.parent.mkdir(parents=True, exist_ok=True)
        self.fs.get([self.key(r) for r in rels], [str(t) for t in tmps])
        for rel, tmp in zip(rels, tmps):
            os.replace(tmp, self.cache / rel)
