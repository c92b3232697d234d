"""Fetch files from the Hugging Face Hub with the real `huggingface_hub` client, resumable across runs.

The client does every Hub-specific step: `HfApi.repo_info` resolves a branch to its commit (so one fetch
never mixes two revisions), `list_repo_tree` lists files with sizes and LFS sha256, `get_hf_file_metadata`
resolves a file (HEAD: ETag, X-Repo-Commit, size, the CDN redirect) and `http_get` streams it with Range
and its own retries. The one design choice: we call `http_get` with our own partial file instead of
`hf_hub_download`, because in huggingface_hub 2.x the latter streams into a per-process temporary file
that it deletes on failure, so an interrupted 27 GB `images.zip` would restart from zero. Here the partial
bytes persist as `<file>.incomplete` and the next run resumes them. Every file is checked against the
listing (LFS sha256, or the git blob sha1 of a small file) before it gets its final name.
`HF_ENDPOINT` (a mirror, or a loopback test server) and `HF_TOKEN` are read from the environment when
called, not when imported.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imp_data.core.errors import FetchError
from imp_data.core.progress import progress_bar
from imp_data.fetch.marker import FileRecord
from imp_data.fetch.transport import origin

DEFAULT_ENDPOINT = "https://huggingface.co"
_FULL_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubFile:
    """One file of a repo listing: `sha256` is set for LFS files, `blob_id` is the git blob sha1."""

    path: str
    size: int
    blob_id: str
    sha256: str | None = None

    @property
    def identity(self) -> str:
        return self.sha256 or self.blob_id


def hub_endpoint(endpoint: str | None = None) -> str:
    """The Hub base URL: `endpoint`, else `$HF_ENDPOINT`, else huggingface.co."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


@contextlib.contextmanager
def _as_fetch_error(what: str, endpoint: str) -> Iterator[None]:
    """Turn huggingface_hub / httpx errors into one FetchError line naming the repo and the fix."""
    from huggingface_hub import errors as hf_errors

    try:
        yield
    except FetchError:
        raise
    except hf_errors.RevisionNotFoundError:
        raise FetchError(f"{what}: revision not found at {endpoint} — pin an existing branch, tag or commit") from None
    except hf_errors.RemoteEntryNotFoundError as err:
        raise FetchError(f"{what}: file not found at {endpoint} ({err.response.url})") from None
    except (hf_errors.GatedRepoError, hf_errors.RepositoryNotFoundError):
        raise FetchError(f"{what}: repository not found or not accessible at {endpoint} — check the name; for a "
                         "gated or private repo accept its terms on the Hub and set HF_TOKEN") from None
    except hf_errors.HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        hint = " — set HF_TOKEN" if status in (401, 403) else ""
        raise FetchError(f"{what}: HTTP {status} from {endpoint}{hint}",
                         transient=status == 429 or (isinstance(status, int) and status >= 500)) from None
    except Exception as err:  # httpx connection errors, consistency checks: keep the partial, rerun resumes
        if type(err).__module__.startswith(("httpx", "httpcore")) or isinstance(err, OSError):
            raise FetchError(f"{what}: {type(err).__name__}: {err} — check the network or HF_ENDPOINT "
                             f"({endpoint}); rerun to resume", transient=True) from None
        raise


def _digests(path: Path, size: int) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file in one pass."""
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha256.update(chunk)
            blob.update(chunk)
    return sha256.hexdigest(), blob.hexdigest()


def _matches(entry: HubFile, path: Path) -> str | None:
    """The file's sha256 when `path` holds exactly `entry`'s content, else None."""
    if not path.is_file() or path.stat().st_size != entry.size:
        return None
    sha256, blob = _digests(path, entry.size)
    ok = sha256 == entry.sha256 if entry.sha256 else blob == entry.blob_id
    return sha256 if ok else None


def _forwarding_bar(bar):
    """A tqdm stand-in for `http_get` that adds its byte counts to our one aggregate bar."""

    class Forward:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> bool:
            return False

        def update(self, n: int | float | None = 1) -> None:
            bar.update(n or 0)

        def close(self) -> None:
            pass

    return Forward


class HubRepo:
    """One repo at one revision: list it, match patterns, download files into a directory.

    Example:
        >>> HubRepo("liuhaotian/LLaVA-Pretrain", revision="70f9d1e").label
        'hf://datasets/liuhaotian/LLaVA-Pretrain@70f9d1e'
    """

    def __init__(self, repo_id: str, *, repo_type: str = "dataset", revision: str = "main",
                 endpoint: str | None = None, token: str | None = None) -> None:
        self.repo_id, self.repo_type, self.revision = repo_id, repo_type, revision
        self.endpoint = hub_endpoint(endpoint)
        self.token = token or os.environ.get("HF_TOKEN") or None  # None: the client's own lookup (token file)
        self._commit: str | None = None
        self._listings: dict[str, list[HubFile]] = {}

    @property
    def label(self) -> str:
        return f"hf://{self.repo_type}s/{self.repo_id}@{self.revision}"

    def _api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.token)

    def commit(self) -> str:
        """The commit sha the revision points at (one call, then remembered)."""
        if self._commit is None:
            if _FULL_SHA.fullmatch(self.revision):
                self._commit = self.revision
            else:
                with _as_fetch_error(self.label, self.endpoint):
                    info = self._api().repo_info(self.repo_id, repo_type=self.repo_type, revision=self.revision)
                self._commit = info.sha
        return self._commit

    def list_files(self, under: str = "") -> list[HubFile]:
        """Every file at the commit (below folder `under`), with size and checksums; listed once."""
        from huggingface_hub.errors import RemoteEntryNotFoundError
        from huggingface_hub.hf_api import RepoFile

        if under not in self._listings:
            commit = self.commit()
            with _as_fetch_error(self.label, self.endpoint):
                try:
                    tree = list(self._api().list_repo_tree(self.repo_id, path_in_repo=under or None, recursive=True,
                                                           revision=commit, repo_type=self.repo_type))
                except RemoteEntryNotFoundError:
                    tree = []  # no such folder: the caller reports the patterns that matched nothing
                self._listings[under] = [HubFile(f.path, f.size, f.blob_id, f.lfs.sha256 if f.lfs else None)
                                         for f in tree if isinstance(f, RepoFile)]
        return self._listings[under]

    def match(self, patterns: Sequence[str]) -> tuple[list[HubFile], list[str]]:
        """Files matching any pattern (huggingface_hub's `allow_patterns` rules), and the patterns that
        matched nothing."""
        from huggingface_hub.utils import filter_repo_objects

        files = {f.path: f for f in self.list_files(_listing_root(patterns))}
        found: dict[str, HubFile] = {}
        missing = []
        for pattern in patterns:
            hits = list(filter_repo_objects(sorted(files), allow_patterns=[pattern]))
            if not hits:
                missing.append(pattern)
            found.update((h, files[h]) for h in hits)
        return [found[p] for p in sorted(found)], missing

    def download(self, files: Sequence[HubFile], dest: Path, *, progress: bool = True,
                 max_workers: int = 4) -> list[FileRecord]:
        """Download `files` under `dest` (repo paths kept); files already complete cost no request."""
        records: list[FileRecord] = []
        todo: list[HubFile] = []
        for entry in files:
            sha256 = _matches(entry, dest / entry.path)
            if sha256:
                records.append(FileRecord(entry.path, entry.size, sha256))
            else:
                todo.append(entry)
        if not todo:
            return records
        with progress_bar(total=sum(f.size for f in todo), desc=f"hub {self.repo_id}", unit="B", unit_scale=True,
                          enabled=progress) as bar:
            with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(todo)))) as pool:
                records += list(pool.map(lambda f: self._download_one(f, dest, bar), todo))
        return sorted(records, key=lambda r: r.path)

    def _download_one(self, entry: HubFile, dest: Path, bar) -> FileRecord:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        final = dest / entry.path
        final.parent.mkdir(parents=True, exist_ok=True)
        part, meta = final.with_name(final.name + ".incomplete"), final.with_name(final.name + ".incomplete.json")
        try:
            same = json.loads(meta.read_text()).get("identity") == entry.identity
        except (OSError, ValueError):
            same = False
        if not same or (part.exists() and part.stat().st_size > entry.size):
            part.unlink(missing_ok=True)  # a partial of another version (or corrupt) is never spliced
        meta.write_text(json.dumps({"identity": entry.identity, "path": entry.path}))
        what = f"{self.label}/{entry.path}"
        url = hf_hub_url(self.repo_id, entry.path, repo_type=self.repo_type, revision=self.commit(),
                         endpoint=self.endpoint)
        with _as_fetch_error(what, self.endpoint):
            info = get_hf_file_metadata(url, token=self.token, endpoint=self.endpoint)
            headers = build_hf_headers(token=self.token)
            headers["Accept-Encoding"] = "identity"
            if origin(info.location) != origin(url):
                headers.pop("authorization", None)  # the token never leaves the Hub for a CDN
            with open(part, "ab") as fh:
                resume = fh.tell()
                bar.update(resume)
                http_get(info.location, fh, resume_size=resume, headers=headers, expected_size=entry.size,
                         displayed_filename=entry.path, tqdm_class=_forwarding_bar(bar))
        sha256, blob = _digests(part, entry.size)
        if (sha256 != entry.sha256) if entry.sha256 else (blob != entry.blob_id):
            part.unlink(missing_ok=True)
            raise FetchError(f"{what}: downloaded bytes do not match the Hub's checksum (deleted; rerun to refetch)",
                             transient=True)
        os.replace(part, final)
        meta.unlink(missing_ok=True)
        return FileRecord(entry.path, entry.size, sha256)


def _listing_root(patterns: Sequence[str]) -> str:
    """The deepest folder holding every pattern's matches, so only that part of a big repo is listed.

    Example:
        >>> _listing_root(["allava_laion/image_chunks/images_*.zip", "allava_laion/x.json"])
        'allava_laion'
    """
    heads = []
    for pattern in patterns:
        parts = pattern.split("/")[:-1]
        cut = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts))
        heads.append(parts[:cut])
    common = heads[0] if heads else []
    for head in heads[1:]:
        n = 0
        while n < min(len(common), len(head)) and common[n] == head[n]:
            n += 1
        common = common[:n]
    return "/".join(common)
