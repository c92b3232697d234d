"""The Hub's write endpoints for `HubServer`, as huggingface_hub 2.x's upload API (`HfApi.create_repo`,
`create_branch`, `create_commit`, `preupload_lfs_files`, `upload_folder`) calls them over plain LFS
(the client takes that path when `HF_HUB_DISABLE_XET` is set; Xet's chunk store is not emulated):

- `POST /api/repos/create` {name, organization, type, visibility|private}: a repo whose first commit holds a
  `.gitattributes`, as the Hub makes it; 409 when it exists (`exist_ok=True` accepts that);
- `POST /api/validate-yaml` {content, repoType}: the README's front matter must parse as YAML (400 with
  `errors` otherwise), what `create_commit` asks before uploading a README.md;
- `POST /api/{datasets|models}/{repo}/branch/{branch}` {startingPoint}: 409 when it exists;
- `POST /api/{datasets|models}/{repo}/preupload/{rev}` {files: [{path, sample, size}]}: per file `uploadMode`
  ("lfs" from `lfs_threshold` bytes up, as `HubServer.is_lfs` serves it) and the `oid` already at that path
  (sha256 for LFS, git blob sha1 otherwise), from which the client drops unchanged files;
- `POST /{datasets/}{repo}.git/info/lfs/objects/batch` (git-lfs batch API): an `upload` action on the CDN
  and a `verify` action per object the store lacks, no actions for one it has (the client skips it);
- `PUT <cdn>/upload/<sha256>`: the bytes, refused unless they hash to the oid; `POST .../objects/verify`;
- `POST /api/{datasets|models}/{repo}/commit/{rev}` (ndjson: header, file, lfsFile, deletedFile,
  deletedFolder): a new commit on the branch; an `lfsFile` must have been uploaded, a `parentCommit` must be
  the head (412). `HubServer.refuse_commit` makes one commit fail with 500 and write nothing.

Writes need `Authorization: Bearer <token>` when the server has a token. Shapes: huggingface_hub
`hf_api.py` (`create_repo`, `create_branch`, `_validate_yaml`), `_commit_api.py` (`_fetch_upload_modes`,
`_prepare_commit_payload`, `_send_commit`), `lfs.py` (`post_lfs_batch_info`, `lfs_upload`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from urllib.parse import unquote, urlsplit

import yaml

GITATTRIBUTES = b"*.tar filter=lfs diff=lfs merge=lfs -text\n*.parquet filter=lfs diff=lfs merge=lfs -text\n"
LFS_PATH = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+)/([^/]+)\.git/info/lfs/objects/(batch|verify)$")


def read_body(handler) -> bytes:
    """The request body, `Content-Length` or chunked (a streamed upload)."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while size := int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16):
            out += handler.rfile.read(size)
            handler.rfile.readline()
        while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        return bytes(out)
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def handle_post(handler, hub) -> None:
    hub.record(handler)
    body = read_body(handler)
    if hub.token and handler.headers.get("Authorization") != f"Bearer {hub.token}":
        handler._error(401, "Unauthorized")
        return
    path = urlsplit(handler.path).path
    segments = path.strip("/").split("/")
    if (m := LFS_PATH.match(path)) is not None:
        _lfs(handler, hub, m.group(4), json.loads(body))
    elif segments[:3] == ["api", "repos", "create"]:
        _create_repo(handler, hub, json.loads(body))
    elif segments[:2] == ["api", "validate-yaml"]:
        _validate_yaml(handler, json.loads(body)["content"])
    elif segments[0] == "api" and len(segments) >= 6 and segments[1] in ("datasets", "models"):
        repo_type, repo_id, verb, rev = segments[1][:-1], "/".join(segments[2:4]), segments[4], unquote(segments[5])
        if verb == "branch":
            _create_branch(handler, hub, repo_type, repo_id, rev, json.loads(body or b"{}"))
        elif verb in ("preupload", "commit") and (found := handler._lookup(hub, repo_type, repo_id, rev)):
            if verb == "preupload":
                _preupload(handler, hub, found[0].commits[found[1]], json.loads(body))
            else:
                _commit(handler, hub, repo_type, repo_id, rev, found, body)
        elif verb not in ("preupload", "commit"):
            handler.send_status(404, f"unknown api verb {verb}")
    else:
        handler.send_status(404, "not a Hub endpoint this server knows")


def _json(handler, obj, status: int = 200, content_type: str = "application/json") -> None:
    handler.send_bytes(json.dumps(obj).encode(), status=status, content_type=content_type)


def _create_repo(handler, hub, payload: dict) -> None:
    repo_type = payload.get("type") or "model"
    repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
    url = f"{hub.url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
    if (repo_type, repo_id) in hub.repos:
        handler.send_bytes(json.dumps({"error": "You already created this repo", "url": url}).encode(), status=409,
                           content_type="application/json", headers={"X-Error-Message": "repo exists"})
        return
    private = payload.get("visibility", "public") != "public" or bool(payload.get("private"))
    hub.add_commit(repo_id, {".gitattributes": GITATTRIBUTES}, repo_type=repo_type, private=private)
    _json(handler, {"url": url, "name": repo_id})


def _validate_yaml(handler, content: str) -> None:
    if not content.startswith("---\n"):
        _json(handler, {"warnings": [{"message": "Empty or missing yaml metadata in repo card"}]})
        return
    try:
        meta = yaml.safe_load(content[4:].partition("\n---\n")[0])
        if not isinstance(meta, dict):
            raise yaml.YAMLError("the metadata is not a mapping")
    except yaml.YAMLError as err:
        _json(handler, {"errors": [{"message": str(err)}]}, status=400)
        return
    _json(handler, {"warnings": []})


def _create_branch(handler, hub, repo_type: str, repo_id: str, branch: str, payload: dict) -> None:
    repo = hub.repos.get((repo_type, repo_id))
    if repo is None:
        handler._error(404, "RepoNotFound")
    elif branch in repo.branches:
        handler._error(409, "BranchExists")
    elif (start := repo.resolve(payload.get("startingPoint") or "main")) is None:
        handler._error(404, "RevisionNotFound")
    else:
        repo.branches[branch] = start
        _json(handler, {})


def _remote_oid(hub, data: bytes) -> str:
    from tests.servers.hub_server import git_blob_sha1

    return hashlib.sha256(data).hexdigest() if hub.is_lfs(data) else git_blob_sha1(data)


def _preupload(handler, hub, files: dict[str, bytes], payload: dict) -> None:
    out = [{"path": f["path"], "uploadMode": "lfs" if f["size"] >= hub.lfs_threshold else "regular",
            "shouldIgnore": False, "oid": _remote_oid(hub, files[f["path"]]) if f["path"] in files else None}
           for f in payload["files"]]
    _json(handler, {"files": out})


def _lfs(handler, hub, verb: str, payload: dict) -> None:
    if verb == "verify":
        data = hub.blobs.get(payload["oid"])
        ok = data is not None and len(data) == payload["size"]
        _json(handler, {"message": "ok" if ok else "object not found"}, status=200 if ok else 404)
        return
    verify = {"href": f"{hub.url}{urlsplit(handler.path).path.rsplit('/', 1)[0]}/verify", "header": {}}
    objects = []
    for obj in payload["objects"]:
        entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
        if obj["oid"] not in hub.blobs:
            entry["actions"] = {"upload": {"href": f"{hub.cdn.url}/upload/{obj['oid']}", "header": {}},
                                "verify": verify}
        objects.append(entry)
    _json(handler, {"transfer": "basic", "objects": objects}, content_type="application/vnd.git-lfs+json")


def handle_put(handler, hub) -> None:
    """The CDN's upload target: bytes stored under their sha256 only when they hash to it."""
    handler.owner.record(handler)
    data = read_body(handler)
    oid = urlsplit(handler.path).path.rsplit("/", 1)[-1]
    if not urlsplit(handler.path).path.startswith("/upload/") or hashlib.sha256(data).hexdigest() != oid:
        handler.send_status(400, "BadDigest")
        return
    with hub.lock:
        hub.blobs[oid] = data
    handler.send_bytes(b"", content_type="text/plain")


def _commit(handler, hub, repo_type: str, repo_id: str, branch: str, found, body: bytes) -> None:
    repo, head = found
    if branch not in repo.branches:
        handler._error(400, "NotABranch")
        return
    files, header, touched = dict(repo.commits[head]), {}, []
    for line in body.splitlines():
        item = json.loads(line)
        key, value = item["key"], item["value"]
        touched += [value["path"]] if key != "header" else []
        if key == "header":
            header = value
        elif key == "file":
            files[value["path"]] = base64.b64decode(value["content"])
        elif key == "lfsFile":
            data = hub.blobs.get(value["oid"])
            if data is None or len(data) != value["size"]:
                _json(handler, {"error": f"{value['path']}: LFS object {value['oid']} was not uploaded"}, status=422)
                return
            files[value["path"]] = data
        elif key == "deletedFile":
            if files.pop(value["path"], None) is None:
                handler._error(404, "EntryNotFound")
                return
        elif key == "deletedFolder":
            files = {p: d for p, d in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
    if header.get("parentCommit") not in (None, head):
        _json(handler, {"error": "A commit has happened since. Please refresh and try again."}, status=412)
        return
    if hub.take_commit_refusal():
        handler.send_status(500, "commit refused (HubServer.refuse_commit)")
        return
    sha = hub.add_commit(repo_id, files, repo_type=repo_type, branch=branch, private=repo.private)
    hub.commit_log.append((repo_id, branch, header.get("summary", ""), sha, touched))
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    _json(handler, {"success": True, "commitOid": sha, "commitUrl": f"{hub.url}/{prefix}{repo_id}/commit/{sha}",
                    "pullRequestUrl": None})
