"""Publish a built mix to a Hugging Face Hub dataset repo: `imp-data publish MIX hf://datasets/ORG/NAME[@branch]`.

Through huggingface_hub's commit API (`HfApi.create_commit`: LFS/Xet uploads, then one commit), not its
fsspec file system, which would make one commit per file. A mix of thousands of shards goes up in
several commits of at most `files_per_commit` files / `bytes_per_commit` bytes, so a run that dies loses at
most the commit in flight (its blobs, already uploaded, are not sent again: the Hub knows them). Every
run first lists the repo and skips each file whose remote blob already has the local content (LFS sha256,
or git blob sha1 for small files): a rerun after a failure resumes where it stopped, and publishing an
unchanged mix uploads nothing and makes no commit.

The card (README.md, rendered for this repo so its loading examples name it), stats.json, index.parquet
and the wids shard list go up in the last commit, with the deletion of shards a smaller rebuild no
longer has: a reader who finds the card finds the whole mix.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from imp_data.core.errors import ImpDataError
from imp_data.core.io import file_sha256
from imp_data.core.layout import MixDir

HF_URL = re.compile(r"^hf://datasets/([A-Za-z0-9][\w.-]*/[\w.-]+?)(?:@([^/@\s]+))?/?$")
FILES_PER_COMMIT = 100
BYTES_PER_COMMIT = 20 * 1024**3
RELATIVE = MixDir(Path())  # the repo mirrors the mix folder: its names, relative to the repo root
CARD = RELATIVE.card.as_posix()
LAST = tuple(p.as_posix() for p in (RELATIVE.card, RELATIVE.stats, RELATIVE.index, RELATIVE.wids))  # final commit
MANAGED = (f"{RELATIVE.shards.as_posix()}/", f"{RELATIVE.charts.as_posix()}/")  # stale remote files deleted


def parse_hub_url(url: str) -> tuple[str, str | None]:
    """(repo_id, branch or None) of `hf://datasets/ORG/NAME[@branch]`."""
    m = HF_URL.match(url)
    if m is None:
        raise ImpDataError(f"{url}: not a Hub dataset URL — use hf://datasets/ORG/NAME[@branch]")
    return m.group(1), m.group(2)


def git_blob_sha1(data: bytes) -> str:
    """The git object id the Hub lists for a small (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _local_files(mix_dir: Path, repo_id: str, branch: str | None) -> dict[str, Path | bytes]:
    from imp_data.audit.card import render_card
    from imp_data.audit.stats import load_stats
    files: dict[str, Path | bytes] = {p.relative_to(mix_dir).as_posix(): p
                                      for p in MixDir(mix_dir).published_files() if p.is_file()}
    files[CARD] = render_card(load_stats(mix_dir), repo_id=repo_id, revision=branch).encode("utf-8")
    return files


def _unchanged(entry, local: Path | bytes) -> bool:
    """Whether the remote file `entry` (a RepoFile) already holds `local`'s bytes."""
    size = len(local) if isinstance(local, bytes) else local.stat().st_size
    if entry.size != size:
        return False
    if entry.lfs is not None:
        sha = hashlib.sha256(local).hexdigest() if isinstance(local, bytes) else file_sha256(local)
        return entry.lfs.sha256 == sha
    return entry.blob_id == git_blob_sha1(local if isinstance(local, bytes) else local.read_bytes())


def _chunks(paths: list[str], sizes: dict[str, int], max_files: int, max_bytes: int) -> list[list[str]]:
    chunks: list[list[str]] = []
    total = 0
    for path in paths:
        if not chunks or len(chunks[-1]) >= max_files or total + sizes[path] > max_bytes:
            chunks.append([])
            total = 0
        chunks[-1].append(path)
        total += sizes[path]
    return chunks


def publish_to_hub(mix_dir: str | Path, url: str, *, token: str | None = None, private: bool | None = None,
                   files_per_commit: int = FILES_PER_COMMIT, bytes_per_commit: int = BYTES_PER_COMMIT,
                   endpoint: str | None = None, say: Callable[[str], None] | None = None) -> dict:
    """Upload a built mix to a Hub dataset repo (created if missing, `private` then) on its branch (created
    from main if missing). Returns {"uploaded", "skipped", "deleted", "commits"}."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.hf_api import RepoFile

    from imp_data.fetch.hub import hub_endpoint

    mix_dir = Path(mix_dir)
    if not MixDir(mix_dir).index.is_file() or not MixDir(mix_dir).stats.is_file():
        raise ImpDataError(f"{mix_dir}: not a built mix (no index.parquet/stats.json) — run `imp-data build` first")
    repo_id, branch = parse_hub_url(url)
    api = HfApi(endpoint=hub_endpoint(endpoint), token=token)
    where = f"{url} ({api.endpoint})"
    done: list[str] = []
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if branch:
            api.create_branch(repo_id, repo_type="dataset", branch=branch, exist_ok=True)
        remote = {f.path: f for f in api.list_repo_tree(repo_id, repo_type="dataset", revision=branch,
                                                       recursive=True) if isinstance(f, RepoFile)}
        local = _local_files(mix_dir, repo_id, branch)
        todo = [p for p, data in local.items() if p not in remote or not _unchanged(remote[p], data)]
        stale = sorted(p for p in remote if p.startswith(MANAGED) and p not in local)
        sizes = {p: len(d) if isinstance(d, bytes) else d.stat().st_size for p, d in local.items()}
        body = _chunks([p for p in todo if p not in LAST], sizes, files_per_commit, bytes_per_commit)
        last = [p for p in todo if p in LAST]
        if CARD in last:  # the Hub's card check that create_commit runs, before the shards go up
            try:
                api._validate_yaml(local[CARD].decode("utf-8"), repo_type="dataset")
            except ValueError as err:
                raise ImpDataError(f"{where}: the Hub refuses the dataset card: {err}") from None
        commits = body + ([last] if last or stale else [])  # the last one also deletes the stale files
        for i, paths in enumerate(commits, 1):
            ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=local[p] if isinstance(local[p], bytes)
                                      else str(local[p])) for p in paths]
            if i == len(commits):
                ops += [CommitOperationDelete(path_in_repo=p) for p in stale]
            api.create_commit(repo_id, repo_type="dataset", revision=branch, operations=ops,
                              commit_message=f"imp-data publish {mix_dir.name} ({i}/{len(commits)}): "
                                             f"{len(paths)} file(s)" + (f", {len(stale)} removed"
                                                                        if stale and i == len(commits) else ""))
            done += paths
            if say:
                say(f"commit {i}/{len(commits)}: {len(paths)} file(s) -> {where}")
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", "?")
        raise ImpDataError(f"{where}: publishing stopped (HTTP {status}: {str(err).splitlines()[0]}); {len(done)} "
                           "file(s) were committed — rerun the same command to resume (committed files are "
                           "skipped)") from None
    return {"uploaded": len(todo), "skipped": len(local) - len(todo), "deleted": len(stale), "commits": len(commits)}
