"""Recipe locations: parsing every form, local paths read in place with one error listing every missing
file, `https://` files fetched under raw/<source>/<host>/... with a completion marker (a rerun sends
nothing, a damaged file is refetched), downloads resumed with Range + If-Range (and restarted when the
file changed upstream), concurrent fetches of one location serialised by a lock.

Run: pytest tests/test_fetch_locations.py  (about 2 s; servers on 127.0.0.1 only)
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from imp_data.core.errors import FetchError
from imp_data.fetch.download import download_file
from imp_data.fetch.locations import HubLocation, LocalLocation, UrlLocation, parse_location, resolve_location
from imp_data.fetch.marker import FileRecord, marker_path, marker_problems, read_marker, write_marker
from imp_data.fetch.transport import Backoff
from tests.servers import no_external_network  # noqa: F401 - autouse guard
from tests.servers.image_server import ImageServer

QUICK = Backoff(base=0.01, cap=0.05)


@pytest.fixture
def server():
    with ImageServer() as srv:
        yield srv


@pytest.mark.parametrize("loc, parsed", [
    ("hf://datasets/liuhaotian/LLaVA-Pretrain@70f9d1e/images.zip",
     HubLocation("dataset", "liuhaotian/LLaVA-Pretrain", "70f9d1e", "images.zip")),
    ("hf://datasets/FreedomIntelligence/ALLaVA-4V@c7c821e/allava_laion/image_chunks/images_*.zip",
     HubLocation("dataset", "FreedomIntelligence/ALLaVA-4V", "c7c821e", "allava_laion/image_chunks/images_*.zip")),
    ("hf://datasets/laion/gpt4v-dataset", HubLocation("dataset", "laion/gpt4v-dataset", "main", "")),
    ("hf://datasets/org/repo@refs%2Fconvert%2Fparquet/data/",
     HubLocation("dataset", "org/repo", "refs/convert/parquet", "data")),
    ("hf://models/MILVLG/imp-v1-3b@main", HubLocation("model", "MILVLG/imp-v1-3b", "main", "")),
    ("hf://MILVLG/imp-v1-3b", HubLocation("model", "MILVLG/imp-v1-3b", "main", "")),
    ("http://images.cocodataset.org/zips/train2017.zip", UrlLocation("http://images.cocodataset.org/zips/train2017.zip")),
    ("https://dl.fbaipublicfiles.com/textvqa/images/train_val_images.zip",
     UrlLocation("https://dl.fbaipublicfiles.com/textvqa/images/train_val_images.zip")),
    ("raw/dvqa", LocalLocation("raw/dvqa")),
    ("/data/ChartQA Dataset/train/png", LocalLocation("/data/ChartQA Dataset/train/png")),
    ("file:///data/my%20dir", LocalLocation("/data/my dir")),
])
def test_parse_location(loc, parsed):
    assert parse_location(loc) == parsed


def test_hub_location_round_trips():
    loc = HubLocation("dataset", "org/repo", "refs/pr/1", "a/b.json")
    assert parse_location(str(loc)) == loc


@pytest.mark.parametrize("bad", ["hf://datasets/only-one-part", "hf://", "s3://bucket/key", "https:///nohost"])
def test_bad_locations_say_which_forms_are_accepted(bad):
    with pytest.raises(FetchError, match="expected hf://datasets/"):
        parse_location(bad)


def test_local_location_lists_every_missing_file_at_once(tmp_path):
    (tmp_path / "raw/docvqa/train").mkdir(parents=True)
    (tmp_path / "raw/docvqa/train/train_v1.0_withQT.json").write_text("{}")
    files = ["train/train_v1.0_withQT.json", "val/val_v1.0_withQT.json", "train/ocr/*.json"]
    with pytest.raises(FetchError) as err:
        resolve_location("raw/docvqa", tmp_path, files=files, cache_dir=tmp_path / "unused")
    message = str(err.value)
    assert "2 expected file(s) missing" in message
    assert "val/val_v1.0_withQT.json" in message and "train/ocr/*.json" in message
    assert "train_v1.0_withQT.json," not in message
    assert not (tmp_path / "unused").exists(), "a local location is read in place, never copied"

    (tmp_path / "raw/docvqa/val").mkdir()
    (tmp_path / "raw/docvqa/val/val_v1.0_withQT.json").write_text("{}")
    (tmp_path / "raw/docvqa/train/ocr").mkdir()
    (tmp_path / "raw/docvqa/train/ocr/a.json").write_text("{}")
    found = resolve_location("raw/docvqa", tmp_path, files=files, cache_dir=tmp_path / "unused")
    assert found == tmp_path / "raw/docvqa"


def test_local_image_roots_must_exist(tmp_path):
    (tmp_path / "chunks").mkdir()
    (tmp_path / "chunks/images_0.zip").write_bytes(b"PK")
    assert resolve_location(str(tmp_path / "chunks/images_*.zip"), tmp_path, cache_dir=tmp_path) == \
        tmp_path / "chunks/images_*.zip"
    with pytest.raises(FetchError, match="no file matches"):
        resolve_location("chunks/other_*.zip", tmp_path, cache_dir=tmp_path)
    with pytest.raises(FetchError, match="does not exist"):
        resolve_location("coco/train2017.zip", tmp_path, cache_dir=tmp_path)


def test_url_file_fetched_once_with_marker_and_refetched_when_damaged(server, tmp_path):
    data = os.urandom(300_000)
    url = server.add_file("zips/train2017.zip", data)
    raw = tmp_path / "raw/llava_665k"

    path = resolve_location(url, tmp_path, cache_dir=raw, progress=False)

    host = url.split("/")[2].replace(":", "_")
    assert path == raw / host / "files/zips/train2017.zip" and path.read_bytes() == data
    marker = read_marker(marker_path(raw, url))
    assert marker["result"] == f"{host}/files/zips/train2017.zip" and marker["files"][0]["size"] == len(data)
    server.clear()
    assert resolve_location(url, tmp_path, cache_dir=raw, progress=False) == path
    assert server.seen() == [], "a complete fetch is not repeated"

    path.write_bytes(data[:1000])  # damaged (size no longer matches the marker): fetched again
    assert resolve_location(url, tmp_path, cache_dir=raw, progress=False).read_bytes() == data
    assert len(server.seen("GET")) == 1


def test_url_folder_with_named_files(server, tmp_path):
    server.add_file("qa/train_qa.json", b"[]")
    server.add_file("qa/meta/train_metadata.json", b"{}")
    base = f"{server.url}/files/qa"
    root = resolve_location(base, tmp_path, files=["train_qa.json", "meta/train_metadata.json"],
                            cache_dir=tmp_path / "raw", progress=False)
    assert (root / "train_qa.json").read_bytes() == b"[]" and (root / "meta/train_metadata.json").read_bytes() == b"{}"
    with pytest.raises(FetchError, match="cannot be listed"):
        resolve_location(base, tmp_path, files=["*.json"], cache_dir=tmp_path / "raw2", progress=False)
    with pytest.raises(FetchError, match="inside the location"):
        resolve_location(base, tmp_path, files=["../secret.json"], cache_dir=tmp_path / "raw3", progress=False)
    with pytest.raises(FetchError, match="HTTP 404") as err:
        resolve_location(base, tmp_path, files=["absent.json"], cache_dir=tmp_path / "raw4", progress=False)
    assert not err.value.transient
    assert read_marker(marker_path(tmp_path / "raw4", base, ["absent.json"])) is None


def test_download_resumes_after_a_dropped_connection(server, tmp_path):
    data = os.urandom(2_000_000)
    url = server.add_file("big.bin", data)
    server.fault("big.bin", "drop", 700_000)
    size, sha256 = download_file(url, tmp_path / "big.bin", backoff=QUICK, progress=False)
    assert (tmp_path / "big.bin").read_bytes() == data and size == len(data)
    import hashlib

    assert sha256 == hashlib.sha256(data).hexdigest()
    gets = server.seen("GET")
    assert len(gets) == 2 and gets[1].range == "bytes=700000-" and gets[1].headers["if-range"].startswith('"')
    assert not list(tmp_path.glob("*.incomplete*"))


def test_partial_of_a_changed_file_is_not_spliced(server, tmp_path):
    new = os.urandom(50_000)
    url = server.add_file("f.bin", new)
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.incomplete").write_bytes(b"x" * 20_000)  # left by a run against the old version
    (tmp_path / "f.bin.incomplete.json").write_text(json.dumps({"url": url, "validator": '"old-etag"'}))
    download_file(url, dest, backoff=QUICK, progress=False)
    assert dest.read_bytes() == new
    assert server.seen("GET")[0].headers["if-range"] == '"old-etag"'  # asked; the server sent it all


def test_download_gives_up_with_a_clear_error(server, tmp_path):
    url = f"{server.url}/status/503"
    with pytest.raises(FetchError, match="HTTP 503.*3 failed attempt") as err:
        download_file(url, tmp_path / "x", max_failures=3, backoff=QUICK, progress=False)
    assert err.value.transient  # the server may recover: Dagster retries the step later
    assert server.hits("/status/503") == 3


def test_concurrent_fetches_of_one_location_download_once(server, tmp_path):
    url = server.add_file("one.bin", os.urandom(100_000))
    results, errors = [], []

    def fetch() -> None:
        try:
            results.append(resolve_location(url, tmp_path, cache_dir=tmp_path / "raw", progress=False))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(set(results)) == 1
    assert len(server.seen("GET")) == 1


def test_marker_round_trip_and_problems(tmp_path):
    (tmp_path / "a.json").write_bytes(b"[1]")
    path = marker_path(tmp_path, "hf://datasets/o/r@main", ["a.json"])
    write_marker(path, location="hf://datasets/o/r@main", result="", commit="c" * 40,
                 files=[FileRecord("a.json", 3, "x" * 64)])
    marker = read_marker(path)
    assert marker["commit"] == "c" * 40 and marker_problems(marker, tmp_path) == []
    assert marker_problems(marker, tmp_path, verify="sha256") == ["a.json: sha256 differs from the marker"]
    (tmp_path / "a.json").unlink()
    assert marker_problems(marker, tmp_path) == ["a.json: missing"]
    path.write_text("{not json")
    assert read_marker(path) is None  # an unreadable marker means: fetch again
    assert marker_path(tmp_path, "x", ["a"]) != marker_path(tmp_path, "x", ["b"])
    assert not list(Path(path.parent).glob("*.tmp"))
