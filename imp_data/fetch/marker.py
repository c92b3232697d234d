"""Completion markers: a fetch is complete when its marker says so, and the marker is written last.

A marker is a small JSON file, `<dest>/.imp-fetch/<name>-<hash>.json`, one per (location, files) pair, so
a source's annotations and its image archives can share `raw/<source>/` without clobbering each other.
It names the location, the resolved revision, what the fetch resolved to, and every file with its size and
sha256. It is written atomically (temporary file + rename) only after every file is in place, so a crash at
any point leaves either no marker (the rerun fetches what is missing, resuming partial files) or a complete
one (the rerun checks sizes and touches no network). Sizes are the default check because they are free;
`verify="sha256"` re-hashes every file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from imp_data.core.io import file_sha256

MARKER_DIR = ".imp-fetch"
MARKER_VERSION = 1
Verify = Literal["size", "sha256"]


@dataclass(frozen=True)
class FileRecord:
    """One fetched file: `path` is POSIX, relative to the fetch destination."""

    path: str
    size: int
    sha256: str


def marker_path(dest: Path, location: str, files: Sequence[str] | None = None) -> Path:
    """Where the marker of fetching `location` (restricted to `files`) into `dest` lives.

    Example:
        >>> marker_path(Path("/d"), "hf://datasets/a/b@main/images.zip").name[:11]
        'images.zip-'
    """
    key = json.dumps([location, sorted(files) if files else None])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    tail = location.rstrip("/").rsplit("/", 1)[-1] or "root"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", tail)[:48]
    return dest / MARKER_DIR / f"{slug}-{digest}.json"


def write_marker(path: Path, *, location: str, result: str, files: Sequence[FileRecord], **extra) -> None:
    """Atomically write a completion marker; call it only after every file is in place.

    Args:
        path: From `marker_path`.
        location: The location string as written in the recipe.
        result: What the fetch resolved to, relative to the destination ("" = the destination itself).
        files: Every fetched file.
        **extra: More JSON-serialisable facts (e.g. `revision`, `commit`).
    """
    payload = {"version": MARKER_VERSION, "location": location, "result": result, **extra,
               "files": [asdict(f) for f in sorted(files, key=lambda f: f.path)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_marker(path: Path) -> dict | None:
    """The marker's content, or None when absent or unreadable (an unreadable marker means: refetch)."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("version") != MARKER_VERSION:
        return None
    return payload


def marker_problems(marker: dict, dest: Path, verify: Verify = "size") -> list[str]:
    """Why the files a marker lists are not (or no longer) complete under `dest`; [] when they are."""
    problems = []
    for entry in marker.get("files", []):
        path = dest / entry["path"]
        if not path.is_file():
            problems.append(f"{entry['path']}: missing")
        elif path.stat().st_size != entry["size"]:
            problems.append(f"{entry['path']}: {path.stat().st_size} bytes, expected {entry['size']}")
        elif verify == "sha256" and file_sha256(path) != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 differs from the marker")
    return problems
