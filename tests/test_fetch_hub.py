"""Fetching `hf://` locations through the real huggingface_hub client from a Hub look-alike on 127.0.0.1:
allow patterns and a pinned revision, the demo sources end to end, a dropped connection resumed with
Range, a killed run resumed from its partial file, a rerun that sends no request, HF_TOKEN for a private
repo (never forwarded to the CDN), one error listing every missing pattern, and checksum verification.

Run: pytest tests/test_fetch_hub.py  (about 8 s; two tests move 12 MB over loopback)
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import polars as pl
import pytest

from imp_data.core.errors import FetchError
from imp_data.core.io import file_sha256
from imp_data.fetch.image_store import ImageStore
from imp_data.fetch.locations import resolve_location
from imp_data.fetch.marker import marker_path, read_marker
from tests.servers import no_external_network  # noqa: F401 - autouse guard
from tests.servers.hub_server import HubServer
from tests.servers.image_server import make_image, wait_until

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
CHUNK = 10 * MiB  # huggingface_hub's http_get writes in 10 MiB chunks: a resume starts at a multiple


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants as hfc

    # the client's agent-registry lookup goes to constants.ENDPOINT (fixed at import): keep it off the wire
    monkeypatch.setattr(hfc, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with HubServer(lfs_threshold=4096, page_size=50) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def resolve_requests(hub: HubServer) -> list[str]:
    """Paths of file requests (resolve HEAD/GET and CDN GETs), not API listings."""
    return [f"{r.method} {r.path}" for r in hub.all_seen() if "/resolve/" in r.path or r.server == "cdn"]


def test_pinned_revision_and_allow_patterns(hub, tmp_path):
    old = hub.add_commit("org/ds", {"ann/train.json": b"[1]", "ann/val.json": b"[2]", "README.md": b"# v1",
                                    "images.zip": zip_of({"images/a.jpg": make_image("a")})})
    hub.add_commit("org/ds", {"ann/train.json": b"[1, 3]", "ann/val.json": b"[2, 4]", "README.md": b"# v2",
                              "images.zip": zip_of({"images/a.jpg": make_image("b")})})

    pinned = resolve_location(f"hf://datasets/org/ds@{old[:7]}/ann", tmp_path, files=["train.json"],
                              cache_dir=tmp_path / "raw" / "a", progress=False)
    assert pinned == tmp_path / "raw/a/org/ds/ann"
    assert (pinned / "train.json").read_bytes() == b"[1]"
    assert sorted(p.name for p in pinned.iterdir()) == ["train.json"]  # val.json was not allowed
    assert not any("val.json" in r or "README" in r for r in resolve_requests(hub))

    latest = resolve_location("hf://datasets/org/ds/ann", tmp_path, files=["*.json"],
                              cache_dir=tmp_path / "raw" / "b", progress=False)  # no @rev: main
    assert (latest / "train.json").read_bytes() == b"[1, 3]" and (latest / "val.json").read_bytes() == b"[2, 4]"

    archive = resolve_location(f"hf://datasets/org/ds@{old}/images.zip", tmp_path, cache_dir=tmp_path / "raw" / "a",
                               progress=False)
    assert archive.is_file() and archive.name == "images.zip"
    store = ImageStore([type("Root", (), {"prefix": "", "location": str(archive), "member_prefix": "images/"})])
    assert store.read("a.jpg") == make_image("a")


def test_demo_sources_fetch_through_the_hub_like_the_local_mirror(hub, tmp_path):
    from imp_data.build import fetch_source, normalize_source
    from imp_data.core.context import BuildContext
    from imp_data.core.recipe import load_recipe
    from imp_data.fetch.image_store import image_store_factory
    from imp_data.fixtures import write_mirror

    write_mirror(tmp_path / "mirror", scale=1, seed=0)
    commit = hub.add_commit("imp-demo/mirror", tmp_path / "mirror")
    local = load_recipe(ROOT / "manifests" / "demo.yaml")

    def on_hub(loc: str) -> str:
        return f"hf://datasets/imp-demo/mirror@{commit[:12]}/{loc.removeprefix('mirror/')}"

    remote = local.model_copy(deep=True)
    for spec in remote.sources.values():
        spec.location = on_hub(spec.location)
        for root in spec.images:
            root.location = on_hub(root.location)
    local_ctx = BuildContext(recipe=local, data_root=tmp_path, progress=False)
    remote_ctx = BuildContext(recipe=remote, data_root=tmp_path / "data", progress=False)
    for source in local.sources:
        for ctx in (local_ctx, remote_ctx):
            normalize_source(ctx, source, fetch_source(ctx, source))
        samples = pl.read_parquet(local_ctx.layout.normalized(source))
        assert samples.equals(pl.read_parquet(remote_ctx.layout.normalized(source))), source
        local_store, remote_store = image_store_factory(local_ctx, source)(), image_store_factory(remote_ctx, source)()
        images = [i for i in samples["image"].to_list() if i is not None and local_store.exists(i)]
        assert images, f"{source}: no readable image to compare"
        for image in images:
            assert remote_store.read(image) == local_store.read(image), f"{source}: {image}"
    assert (tmp_path / "data/raw/llava_pretrain/imp-demo/mirror/llava_pretrain/images.zip").is_file()
    hub.clear()
    for source in local.sources:  # everything is complete: a second fetch sends nothing
        fetch_source(remote_ctx, source)
        image_store_factory(remote_ctx, source)
    assert hub.all_seen() == []


def test_dropped_connection_resumes_with_range_and_rerun_sends_nothing(hub, tmp_path):
    big = os.urandom(12 * MiB)
    hub.add_commit("org/big", {"data/blob.bin": big, "data/small.json": b"{}"})
    hub.fault(big, "drop", 11 * MiB)  # the first GET ends 11 MiB in
    dest = tmp_path / "raw"
    loc = "hf://datasets/org/big@main/data"

    out = resolve_location(loc, tmp_path, files=["blob.bin", "small.json"], cache_dir=dest, progress=False)

    assert (out / "blob.bin").read_bytes() == big
    ranges = [r.range for r in hub.cdn.seen("GET")]
    assert ranges == [None, f"bytes={CHUNK}-"], "the retry must ask only for the missing bytes"
    marker = read_marker(marker_path(dest, loc, ["blob.bin", "small.json"]))
    assert {f["path"]: (f["size"], f["sha256"]) for f in marker["files"]} == {
        "org/big/data/blob.bin": (len(big), file_sha256(out / "blob.bin")),
        "org/big/data/small.json": (2, file_sha256(out / "small.json"))}
    assert not list(dest.rglob("*.incomplete*"))

    hub.clear()
    resolve_location(loc, tmp_path, files=["blob.bin", "small.json"], cache_dir=dest, progress=False)
    assert hub.all_seen() == [], "a complete fetch must not touch the network"

    marker_path(dest, loc, ["blob.bin", "small.json"]).unlink()  # no marker, files intact: verified, not fetched
    resolve_location(loc, tmp_path, files=["blob.bin", "small.json"], cache_dir=dest, progress=False)
    assert resolve_requests(hub) == []

    (out / "small.json").write_bytes(b"{ }")  # a damaged file is fetched again, alone
    hub.clear()
    resolve_location(loc, tmp_path, files=["blob.bin", "small.json"], cache_dir=dest, progress=False, verify="sha256")
    assert [r for r in resolve_requests(hub) if r.startswith("GET")] == [
        f"GET /datasets/org/big/resolve/{hub.repos[('dataset', 'org/big')].branches['main']}/data/small.json"]
    assert (out / "small.json").read_bytes() == b"{}"


def test_killed_run_resumes_from_its_partial_file(hub, tmp_path):
    big = os.urandom(12 * MiB)
    hub.add_commit("org/big", {"blob.bin": big})
    hub.fault(big, "stall", 11 * MiB)  # send 11 MiB, then hang: the process is killed mid-file
    dest = tmp_path / "raw"
    loc = "hf://datasets/org/big@main/blob.bin"
    code = ("from pathlib import Path; from imp_data.fetch.locations import resolve_location; "
            f"resolve_location({loc!r}, Path({str(tmp_path)!r}), cache_dir=Path({str(dest)!r}), progress=False)")
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1", "IMP_DATA_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = dest / "org/big/blob.bin.incomplete"
    try:
        assert wait_until(lambda: partial.exists() and partial.stat().st_size >= CHUNK, timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert not (dest / "org/big/blob.bin").exists()
    hub.clear()

    out = resolve_location(loc, tmp_path, cache_dir=dest, progress=False)

    assert out.read_bytes() == big
    assert [r.range for r in hub.cdn.seen("GET")] == [f"bytes={CHUNK}-"]


def test_private_repo_needs_hf_token_which_never_reaches_the_cdn(hub, tmp_path, monkeypatch):
    hub.token = "hf_loopback_secret"
    images = zip_of({"x.jpg": make_image("x"), "pad": os.urandom(8192)})  # LFS-sized: served by the CDN
    hub.add_commit("org/private", {"a.json": b"[]", "images.zip": images}, private=True)
    loc = "hf://datasets/org/private"
    with pytest.raises(FetchError, match="HF_TOKEN"):
        resolve_location(loc, tmp_path, cache_dir=tmp_path / "raw", progress=False)
    hub.clear()
    monkeypatch.setenv("HF_TOKEN", "hf_loopback_secret")

    out = resolve_location(loc, tmp_path, cache_dir=tmp_path / "raw", progress=False)

    assert (out / "a.json").read_bytes() == b"[]" and zipfile.is_zipfile(out / "images.zip")
    assert hub.seen() and all(r.headers.get("authorization") == "Bearer hf_loopback_secret" for r in hub.seen())
    assert hub.cdn.seen("GET") and not any("authorization" in r.headers for r in hub.cdn.seen())


def test_every_missing_pattern_is_listed_in_one_error(hub, tmp_path):
    hub.add_commit("org/ds", {"a.json": b"[]", "data/train-00000.parquet": b"PAR1"})
    with pytest.raises(FetchError) as err:
        resolve_location("hf://datasets/org/ds@main", tmp_path, files=["a.json", "b.json", "data/test-*.parquet"],
                         cache_dir=tmp_path / "raw", progress=False)
    message = str(err.value)
    assert "b.json" in message and "data/test-*.parquet" in message and "2 pattern(s)" in message
    assert "a.json, data/train-00000.parquet" in message  # what the repo does have
    assert resolve_requests(hub) == [], "nothing is downloaded when the request cannot be satisfied"
    with pytest.raises(FetchError, match="revision not found") as revision:
        resolve_location("hf://datasets/org/ds@v9.9", tmp_path, cache_dir=tmp_path / "raw", progress=False)
    with pytest.raises(FetchError, match="repository not found") as repository:
        resolve_location("hf://datasets/org/nope", tmp_path, cache_dir=tmp_path / "raw", progress=False)
    # waiting would not change any of these: Dagster does not retry them
    assert not (err.value.transient or revision.value.transient or repository.value.transient)


def test_bytes_that_do_not_match_the_listing_are_rejected(hub, tmp_path):
    good = os.urandom(8192)
    hub.add_commit("org/ds", {"x.bin": good})
    sha = next(iter(hub.blobs))
    hub.blobs[sha] = bytes(reversed(good))  # the CDN serves other bytes of the same size
    loc = "hf://datasets/org/ds@main/x.bin"
    with pytest.raises(FetchError, match="checksum") as err:
        resolve_location(loc, tmp_path, cache_dir=tmp_path / "raw", progress=False)
    assert err.value.transient  # deleted; fetching again may get the right bytes
    assert not (tmp_path / "raw/org/ds/x.bin").exists() and not list((tmp_path / "raw").rglob("*.incomplete"))
    assert read_marker(marker_path(tmp_path / "raw", loc)) is None, "no marker for a failed fetch"


def test_an_unreachable_hub_is_a_transient_error(tmp_path, monkeypatch):
    """Nothing listens at the endpoint: one line naming it, marked transient (Dagster retries it later)."""
    import socket

    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_DISABLE_TELEMETRY", True)  # as in `hub`: no lookup at huggingface.co
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections to it are refused
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(FetchError, match=f"check the network or HF_ENDPOINT .http://127.0.0.1:{port}") as err:
        resolve_location("hf://datasets/org/ds@main", tmp_path, cache_dir=tmp_path / "raw", progress=False)
    assert err.value.transient
