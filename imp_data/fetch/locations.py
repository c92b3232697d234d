"""Where a recipe says data lives, made local: `hf://` repos, `https://` files, or paths read in place.

`resolve_location` is the one entry point; it returns a local directory or file (or a glob of files, for
archive chunks) that adapters and the image store read. Local paths are read in place and checked, with
one error listing every missing file. Remote locations are fetched under the cache directory
(`DATA/raw/<source>/`) in a folder per origin, so that two roots of one source can never collide (GQA's
and VG's archives are both called `images.zip`):

    hf://datasets/<org>/<repo>@<rev>/<path>  ->  raw/<source>/<org>/<repo>/<path>
    https://<host>/<path>                     ->  raw/<source>/<host>/<path>

The one design choice: a fetch is complete when its completion marker (marker.py) says so. The marker is
written after the last file, so a rerun that finds one checks file sizes and touches no network, and a
rerun that finds none fetches only what is missing (partial files resume). Two processes fetching the
same location serialise on a lock file beside the marker. A completed fetch is not re-checked against
the remote: pin a commit (`@<sha>`) for reproducibility, or delete the marker to refresh a branch.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urlsplit

from imp_data.core.errors import FetchError
from imp_data.fetch.marker import FileRecord, Verify, marker_path, marker_problems, read_marker, write_marker

GLOB_CHARS = "*?["
_HF = re.compile(r"(?P<repo>[^/@\s]+/[^/@\s]+)(?:@(?P<rev>[^/\s]+))?(?:/(?P<path>.*))?$")
_FORMS = ("hf://datasets/<org>/<repo>[@<revision>][/<path or glob>], hf://models/<org>/<repo>[@...], "
          "https://<host>/<path>, or a local path (absolute, or relative to the data root)")


@dataclass(frozen=True)
class HubLocation:
    """A repo on the Hugging Face Hub, at a revision (default `main`), optionally a path or glob inside it."""

    repo_type: str
    repo_id: str
    revision: str = "main"
    path: str = ""

    def __str__(self) -> str:
        tail = f"/{self.path}" if self.path else ""
        return f"hf://{self.repo_type}s/{self.repo_id}@{quote(self.revision, safe='')}{tail}"


@dataclass(frozen=True)
class UrlLocation:
    """One file (or, with `files`, a folder of files) on a web server."""

    url: str


@dataclass(frozen=True)
class LocalLocation:
    """A directory, file or glob on this machine; relative paths resolve against the data root."""

    path: str

    def resolve(self, data_root: Path) -> Path:
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else Path(data_root) / path


Location = HubLocation | UrlLocation | LocalLocation


def parse_location(loc: str) -> Location:
    """Parse a recipe location string.

    Example:
        >>> parse_location("hf://datasets/liuhaotian/LLaVA-Pretrain@70f9d1e/images.zip")
        HubLocation(repo_type='dataset', repo_id='liuhaotian/LLaVA-Pretrain', revision='70f9d1e', path='images.zip')
        >>> parse_location("raw/dvqa")
        LocalLocation(path='raw/dvqa')

    Raises:
        FetchError: a malformed `hf://` location or an unsupported scheme.
    """
    loc = loc.strip()
    if loc.startswith("hf://"):
        kind, _, rest = loc[len("hf://"):].partition("/")
        if kind not in ("datasets", "models"):  # no type segment: a model repo, as huggingface_hub reads it
            kind, rest = "models", loc[len("hf://"):]
        m = _HF.match(rest)
        if not m:
            raise FetchError(f"{loc!r}: not a valid Hub location; expected {_FORMS}")
        return HubLocation(kind[:-1], m.group("repo"), unquote(m.group("rev") or "main"),
                           (m.group("path") or "").strip("/"))
    if loc.startswith(("http://", "https://")):
        if not urlsplit(loc).hostname:
            raise FetchError(f"{loc!r}: URL without a host; expected {_FORMS}")
        return UrlLocation(loc)
    if loc.startswith("file://"):
        return LocalLocation(unquote(urlsplit(loc).path))
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", loc):
        raise FetchError(f"{loc!r}: unsupported scheme; expected {_FORMS}")
    return LocalLocation(loc)


def has_glob(path: str | Path) -> bool:
    return any(c in str(path) for c in GLOB_CHARS)


def _safe_relative(name: str, what: str) -> str:
    """A relative POSIX path that stays inside its folder (no absolute paths, no `..`)."""
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or ".." in parts:
        raise FetchError(f"{what}: {name!r} must be a relative path inside the location (no '..', not absolute)")
    return "/".join(parts)


# ---------------------------------------------------------------------------------------------------------
# local


def check_local(base: Path, files: Sequence[str] | None, loc: str) -> Path:
    """Validate a local location read in place; one FetchError lists everything missing."""
    if files:
        if not base.is_dir():
            raise FetchError(f"{loc}: directory {base} does not exist — download the source there "
                             f"(expected files: {', '.join(files)})")
        missing = [f for f in files
                   if not [m for m in (sorted(base.glob(f)) if has_glob(f) else [base / f]) if m.is_file()]]
        if missing:
            raise FetchError(f"{loc}: {len(missing)} expected file(s) missing under {base}: {', '.join(missing)}")
        return base
    if has_glob(base):
        if not glob.glob(str(base)):
            raise FetchError(f"{loc}: no file matches {base}")
    elif not base.exists():
        raise FetchError(f"{loc}: {base} does not exist — download it there or fix the location")
    return base


# ---------------------------------------------------------------------------------------------------------
# remote


def _hub_plan(hub: HubLocation, files: Sequence[str] | None) -> tuple[list[str], str] | None:
    """(patterns, result path inside the repo) — None when the path may be a file or a folder."""
    if files:
        return [f"{hub.path}/{f}" if hub.path else f for f in files], hub.path
    if not hub.path:
        return ["*"], ""
    if has_glob(hub.path):
        return [hub.path], hub.path
    return None


def _fetch_hub(hub: HubLocation, files: Sequence[str] | None, dest: Path, *, progress: bool,
               endpoint: str | None, token: str | None) -> tuple[str, list[FileRecord], dict]:
    from imp_data.fetch.hub import HubRepo

    repo = HubRepo(hub.repo_id, repo_type=hub.repo_type, revision=hub.revision, endpoint=endpoint, token=token)
    plan = _hub_plan(hub, files)
    if plan is None:  # a bare path: the file itself, else everything below that folder
        entries, _ = repo.match([hub.path])
        plan = ([hub.path], hub.path) if entries else ([f"{hub.path}/*"], hub.path)
    patterns, result = plan
    entries, missing = repo.match(patterns)
    if missing:
        sample = ", ".join(f.path for f in repo.list_files()[:8]) or "nothing"
        raise FetchError(f"{repo.label} (commit {repo.commit()[:12]}): {len(missing)} pattern(s) match no file: "
                         f"{', '.join(missing)} (the repo has: {sample})")
    repo_dir = dest / hub.repo_id
    records = repo.download(entries, repo_dir, progress=progress)
    records = [FileRecord(f"{hub.repo_id}/{r.path}", r.size, r.sha256) for r in records]
    return f"{hub.repo_id}/{result}".rstrip("/"), records, {"revision": hub.revision, "commit": repo.commit()}


def _fetch_url(url: str, files: Sequence[str] | None, dest: Path, *,
               progress: bool) -> tuple[str, list[FileRecord], dict]:
    from imp_data.fetch.download import download_file

    parts = urlsplit(url)
    folder = [_safe_segment(parts.netloc)] + [_safe_segment(unquote(s)) for s in parts.path.split("/") if s]
    jobs: list[tuple[str, str]] = []  # (url, path relative to dest)
    if files:
        for name in files:
            if has_glob(name):
                raise FetchError(f"{url}: {name!r} is a glob, and a web server cannot be listed — name the files")
            rel = _safe_relative(name, url)
            jobs.append((f"{url.rstrip('/')}/{quote(rel)}", "/".join(folder + [rel])))
        result = "/".join(folder)
    else:
        if len(folder) == 1:
            folder.append("download")
        jobs.append((url, "/".join(folder)))
        result = jobs[0][1]
    records = []
    for file_url, rel in jobs:
        size, sha256 = download_file(file_url, dest / rel, progress=progress)
        records.append(FileRecord(rel, size, sha256))
    return result, records, {}


def _safe_segment(segment: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._@+=-]+", "_", segment).strip(".") or "_"
    return cleaned[:200]


def resolve_location(loc: str, data_root: Path, *, files: Sequence[str] | None = None, cache_dir: Path,
                     progress: bool = True, verify: Verify = "size", endpoint: str | None = None,
                     token: str | None = None) -> Path:
    """Make a location available locally and return where it is.

    Args:
        loc: Recipe location (`hf://...`, `https://...`, or a local path).
        data_root: Relative local paths resolve against it.
        files: Annotation files (globs allowed except over plain HTTP) expected under the location; None for
            an image root, where the location itself is the file, folder or glob.
        cache_dir: Where remote files go (`DATA/raw/<source>/`).
        progress: Progress bars (rate, ETA) while downloading.
        verify: How a rerun checks a completed fetch: "size" (free) or "sha256" (re-hash).
        endpoint: Hub endpoint; default `$HF_ENDPOINT` or huggingface.co.
        token: Hub token; default `$HF_TOKEN`.

    Returns:
        The local directory (with `files`), file, or glob path holding the data.

    Raises:
        FetchError: missing files (all listed at once), bad location, or a failed download.
    """
    parsed = parse_location(loc)
    if isinstance(parsed, LocalLocation):
        return check_local(parsed.resolve(data_root), files, loc)
    from filelock import FileLock

    dest = Path(cache_dir)
    marker = marker_path(dest, loc, files)
    marker.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(marker) + ".lock"):
        done = read_marker(marker)
        if done is not None and not marker_problems(done, dest, verify):
            return dest / done["result"]
        if isinstance(parsed, HubLocation):
            result, records, extra = _fetch_hub(parsed, files, dest, progress=progress, endpoint=endpoint,
                                                token=token)
        else:
            result, records, extra = _fetch_url(parsed.url, files, dest, progress=progress)
        write_marker(marker, location=loc, result=result, files=records, **extra)
    return dest / result
