"""A Hugging Face Hub look-alike on 127.0.0.1, speaking the endpoints huggingface_hub 2.x calls to download
and (tests/servers/hub_upload.py) to create repos, branches and commits over LFS.

Point `HF_ENDPOINT` (or `endpoint=`) at `HubServer.url` and the real client lists and downloads files:
- `GET /api/{datasets|models}/{repo}/revision/{rev}`: repo info (`sha`, `siblings`), how a branch
  resolves to a commit;
- `GET /api/{datasets|models}/{repo}/tree/{rev}[/{path}]?recursive=`: the file listing, paginated with a
  `Link: <...>; rel="next"` header when `page_size` is small;
- `HEAD|GET /datasets/{repo}/resolve/{rev}/{file}` (models: `/{repo}/resolve/...`): a small (non-LFS)
  file is served directly with `ETag` (git blob sha1), `X-Repo-Commit`, `Content-Length` and Range; an
  LFS file answers `302` to a separate CDN server (another origin, like cdn-lfs.hf.co) with
  `X-Linked-Etag`/`X-Linked-Size`, and the CDN serves the bytes with Range.
Errors carry the real `X-Error-Code`s (RepoNotFound, RevisionNotFound, EntryNotFound). A private repo
needs `Authorization: Bearer <token>`. Faults for resume tests: `drop_once` (close the connection after N
body bytes, once) and `stall` (send N bytes, then hang until the test releases it).

Real endpoint shapes: huggingface_hub `hf_api.py` (`repo_info`, `_iter_repo_tree_pages`),
`file_download.py` (`get_hf_file_metadata`, `http_get`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.servers import LoopbackServer, QuietHandler
from tests.servers.hub_upload import handle_post, handle_put


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    sha = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()


@dataclass
class Repo:
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> {path: bytes}
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> str | None:
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.commits:
            return rev
        matches = [sha for sha in self.commits if len(rev) >= 7 and sha.startswith(rev)]
        return matches[0] if len(matches) == 1 else None


@dataclass
class Fault:
    kind: str  # "drop" | "stall"
    after: int
    remaining: int = 1
    reached: threading.Event = field(default_factory=threading.Event)


class HubServer(LoopbackServer):
    """The Hub API + resolve endpoints; files at least `lfs_threshold` bytes are LFS (served by `cdn`)."""

    name = "hub"

    def __init__(self, *, lfs_threshold: int = 1024, page_size: int = 1000, token: str | None = None) -> None:
        self.handler = _HubHandler
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> bytes, what the CDN serves
        self.faults: dict[str, Fault] = {}  # sha256 -> fault on the next GET of that content
        self.lfs_threshold = lfs_threshold
        self.page_size = page_size
        self.token = token
        self.commit_log: list[tuple] = []  # (repo_id, branch, summary, sha, paths added or deleted) per commit
        self._refuse = -1  # commits still to accept before refusing one (-1: none refused)
        super().__init__()
        self.cdn = CdnServer(self)

    def refuse_commit(self, after: int = 0) -> None:
        """Accept `after` more commits, then answer the next with 500 and write nothing (an interrupted publish)."""
        self._refuse = after

    def take_commit_refusal(self) -> bool:
        with self.lock:
            refuse, self._refuse = self._refuse == 0, self._refuse - 1 if self._refuse >= 0 else -1
            return refuse

    def close(self) -> None:
        self.cdn.close()
        super().close()

    def all_seen(self, method: str | None = None, contains: str = ""):
        """Requests to the API server and the CDN together."""
        return self.seen(method, contains) + self.cdn.seen(method, contains)

    def clear(self) -> None:
        super().clear()
        self.cdn.clear()

    # -- content -----------------------------------------------------------------------------------------

    def add_commit(self, repo_id: str, files: dict[str, bytes] | Path, *, repo_type: str = "dataset",
                   branch: str = "main", private: bool = False) -> str:
        """Add a commit holding exactly `files` (a dict or a folder) and move `branch` to it; return its sha."""
        if isinstance(files, Path):
            files = {p.relative_to(files).as_posix(): p.read_bytes() for p in sorted(files.rglob("*")) if p.is_file()}
        repo = self.repos.setdefault((repo_type, repo_id), Repo(private=private))
        listing = "".join(f"{path}\0{git_blob_sha1(data)}\n" for path, data in sorted(files.items()))
        sha = hashlib.sha1(f"{repo_id}\n{len(repo.commits)}\n{listing}".encode()).hexdigest()
        repo.commits[sha] = dict(files)
        repo.branches[branch] = sha
        for data in files.values():
            self.blobs[hashlib.sha256(data).hexdigest()] = data
        return sha

    def is_lfs(self, data: bytes) -> bool:
        return len(data) >= self.lfs_threshold

    def fault(self, data: bytes, kind: str, after: int, times: int = 1) -> threading.Event:
        """Make the next `times` GETs of this content `drop` or `stall` after `after` body bytes.

        Returns an event set once the fault has fired (the client received those bytes).
        """
        f = Fault(kind, after, times)
        self.faults[hashlib.sha256(data).hexdigest()] = f
        return f.reached

    def take_fault(self, sha256: str, is_get: bool) -> Fault | None:
        with self.lock:
            f = self.faults.get(sha256)
            if f is None or not is_get or f.remaining <= 0:
                return None
            f.remaining -= 1
            return f

    def tree(self, files: dict[str, bytes], under: str) -> list[dict]:
        entries, dirs = [], set()
        for path in sorted(files):
            if under and not path.startswith(under.rstrip("/") + "/"):
                continue
            parts = path.split("/")
            for i in range(1, len(parts)):
                dirs.add("/".join(parts[:i]))
            data = files[path]
            entry = {"type": "file", "size": len(data), "path": path}
            if self.is_lfs(data):
                entry["oid"] = git_blob_sha1(lfs_pointer(data))
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                "pointerSize": len(lfs_pointer(data))}
            else:
                entry["oid"] = git_blob_sha1(data)
            entries.append(entry)
        folders = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "path": d}
                   for d in sorted(dirs) if not under or d.startswith(under.rstrip("/") + "/")]
        return folders + entries


class CdnServer(LoopbackServer):
    """The LFS blob store the Hub redirects to: `GET|HEAD /blobs/<sha256>`, with Range."""

    name = "cdn"

    def __init__(self, hub: HubServer) -> None:
        self.handler = _CdnHandler
        self.hub = hub
        super().__init__()


def _serve_content(handler: QuietHandler, hub: HubServer, data: bytes, headers: dict[str, str]) -> None:
    sha = hashlib.sha256(data).hexdigest()
    fault = hub.take_fault(sha, handler.command == "GET")
    if fault is not None:
        fault.reached.set()
    handler.send_bytes(data, headers=headers, ranges=True,
                       drop_after=fault.after if fault and fault.kind == "drop" else None,
                       stall_after=fault.after if fault and fault.kind == "stall" else None)


class _CdnHandler(QuietHandler):
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_PUT(self) -> None:
        handle_put(self, self.owner.hub)

    def do_GET(self) -> None:
        self.owner.record(self)
        hub = self.owner.hub
        path = urlsplit(self.path).path
        sha = path.rsplit("/", 1)[-1]
        if not path.startswith("/blobs/") or sha not in hub.blobs:
            self.send_status(404, "NoSuchKey")
            return
        _serve_content(self, hub, hub.blobs[sha], {"ETag": f'"{sha}"'})


class _HubHandler(QuietHandler):
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        handle_post(self, self.owner)

    def do_GET(self) -> None:
        hub: HubServer = self.owner
        hub.record(self)
        split = urlsplit(self.path)
        segments = split.path.strip("/").split("/")
        if segments[0] == "api" and len(segments) >= 6 and segments[1] in ("datasets", "models"):
            self._api(hub, segments[1][:-1], "/".join(segments[2:4]), segments[4], segments[5:], parse_qs(split.query))
        elif segments[0] == "datasets" and len(segments) >= 6 and segments[3] == "resolve":
            self._resolve(hub, "dataset", "/".join(segments[1:3]), segments[4], segments[5:])
        elif len(segments) >= 5 and segments[2] == "resolve":
            self._resolve(hub, "model", "/".join(segments[0:2]), segments[3], segments[4:])
        else:
            self.send_status(404, "not a Hub endpoint this server knows")

    def _error(self, status: int, code: str, commit: str | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": code}
        if commit:
            headers["X-Repo-Commit"] = commit
        self.send_bytes(json.dumps({"error": code}).encode(), status=status, content_type="application/json",
                        headers=headers)

    def _lookup(self, hub: HubServer, repo_type: str, repo_id: str, rev: str) -> tuple[Repo, str] | None:
        repo = hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and self.headers.get("Authorization") != f"Bearer {hub.token}"):
            self._error(401, "RepoNotFound")
            return None
        sha = repo.resolve(unquote(rev))
        if sha is None:
            self._error(404, "RevisionNotFound")
            return None
        return repo, sha

    def _api(self, hub: HubServer, repo_type: str, repo_id: str, verb: str, rest: list[str], query) -> None:
        found = self._lookup(hub, repo_type, repo_id, rest[0])
        if found is None:
            return
        repo, sha = found
        files = repo.commits[sha]
        if verb == "revision":
            info = {"_id": sha[:24], "id": repo_id, "author": repo_id.split("/")[0], "sha": sha,
                    "private": repo.private, "gated": False, "disabled": False, "tags": [],
                    "lastModified": "2024-01-01T00:00:00.000Z",
                    "siblings": [{"rfilename": p} for p in sorted(files)]}
            self.send_bytes(json.dumps(info).encode(), content_type="application/json")
        elif verb == "tree":
            under = unquote("/".join(rest[1:]))
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            entries = hub.tree(files, under)
            if not recursive:
                depth = under.count("/") + 1 if under else 0
                entries = [e for e in entries if e["path"].count("/") == depth]
            start = int(query.get("cursor", ["0"])[0])
            page = entries[start:start + hub.page_size]
            headers = {}
            if start + hub.page_size < len(entries):
                query = f"recursive={str(recursive).lower()}&cursor={start + hub.page_size}"
                nxt = f"{hub.url}{urlsplit(self.path).path}?{query}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            self.send_bytes(json.dumps(page).encode(), content_type="application/json", headers=headers)
        else:
            self.send_status(404, f"unknown api verb {verb}")

    def _resolve(self, hub: HubServer, repo_type: str, repo_id: str, rev: str, path: list[str]) -> None:
        found = self._lookup(hub, repo_type, repo_id, rev)
        if found is None:
            return
        repo, sha = found
        name = unquote("/".join(path))
        data = repo.commits[sha].get(name)
        if data is None:
            self._error(404, "EntryNotFound", commit=sha)
            return
        if hub.is_lfs(data):
            digest = hashlib.sha256(data).hexdigest()
            location = f"{hub.cdn.url}/blobs/{digest}?filename={quote(name.rsplit('/', 1)[-1])}"
            self.send_response(302)
            for key, value in {"Location": location, "X-Repo-Commit": sha, "X-Linked-Etag": f'"{digest}"',
                               "X-Linked-Size": str(len(data)), "ETag": f'"{git_blob_sha1(lfs_pointer(data))}"',
                               "Content-Length": "0"}.items():
                self.send_header(key, value)
            self.end_headers()
            return
        _serve_content(self, hub, data, {"ETag": f'"{git_blob_sha1(data)}"', "X-Repo-Commit": sha})
