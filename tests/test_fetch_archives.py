"""Archives read in place and the image store: nested zip folders, members named `../x` or `/x` (keys only,
nothing written), duplicated names (first wins, counted), plain and compressed tars, ALLaVA-style chunk
globs, longest-prefix roots with member prefixes, `unzip -j` basename matching, URL images, unsafe record
paths, corrupt members, and concurrent readers.

Run: pytest tests/test_fetch_archives.py  (about 1 s)
"""

from __future__ import annotations

import io
import tarfile
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from imp_data.core.errors import ImageError
from imp_data.fetch.archives import Archive, is_archive
from imp_data.fetch.image_store import ImageStore, url_filename
from tests.servers import no_external_network  # noqa: F401 - autouse guard
from tests.servers.image_server import make_image


@dataclass
class Root:
    """Duck-typed like recipe.ImageRoot."""

    location: str
    prefix: str = ""
    member_prefix: str = ""


def write_zip(path: Path, members: list[tuple[str, bytes]], compression=zipfile.ZIP_STORED) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns on the duplicate we write on purpose
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            for name, data in members:
                zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return path


def write_tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


IMG = {n: make_image(n) for n in ("a", "b", "c", "d", "evil", "abs", "first", "second")}
MEMBERS = [
    ("data/wikiart/images/a.jpg", IMG["a"]),           # ShareGPT-4V web zip nesting
    ("data/wikiart/images/deep/er/b.jpg", IMG["b"]),
    ("../evil.jpg", IMG["evil"]),                     # traversal attempt
    ("/abs/abs.jpg", IMG["abs"]),                     # absolute name
    ("data/wikiart/images/dup.jpg", IMG["first"]),
    ("data/wikiart/images/dup.jpg", IMG["second"]),   # duplicated name
]


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_archive_members_read_in_place(tmp_path, kind):
    path = tmp_path / f"web.{kind}"
    if kind == "zip":
        write_zip(path, MEMBERS)
    else:
        write_tar(path, MEMBERS, "w:gz" if kind == "tar.gz" else "w")
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    with Archive(path) as archive:
        assert archive.read("data/wikiart/images/a.jpg") == IMG["a"]
        assert archive.read("./data/wikiart/images/deep/er/b.jpg") == IMG["b"]
        assert archive.read("../evil.jpg") == IMG["evil"]  # a literal key; nothing resolved on disk
        assert archive.read("/abs/abs.jpg") == IMG["abs"]
        assert archive.read("data/wikiart/images/dup.jpg") == IMG["first"]  # first occurrence wins
        assert archive.duplicates == 1 and archive.duplicate_names == ["data/wikiart/images/dup.jpg"]
        assert len(archive) == 5 and "data/wikiart/images/missing.jpg" not in archive
        with pytest.raises(KeyError):
            archive.read("evil.jpg")
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # nothing extracted


def test_is_archive():
    assert [is_archive(p) for p in ("a.zip", "B.TAR", "c.tar.gz", "d.tgz", "e.jpg", "zip")] == \
        [True, True, True, True, False, False]


def test_store_maps_prefixes_to_member_prefixes_and_longest_prefix_wins(tmp_path):
    web = write_zip(tmp_path / "wikiart.zip", MEMBERS)
    coco = write_zip(tmp_path / "train2017.zip", [("train2017/000000033471.jpg", IMG["c"])])
    loose = tmp_path / "loose"
    (loose / "coco/train2017").mkdir(parents=True)
    (loose / "coco/train2017/000000000009.jpg").write_bytes(IMG["d"])
    store = ImageStore([Root(str(loose)),  # catch-all, shortest prefix
                        Root(str(coco), "coco/train2017/", "train2017/"),
                        Root(str(web), "wikiart/images/", "data/wikiart/images/")])
    assert store.read("coco/train2017/000000033471.jpg") == IMG["c"]  # from the zip (longest prefix)
    assert store.read("coco/train2017/000000000009.jpg") == IMG["d"]  # not in the zip: shorter root serves
    assert store.read("wikiart/images/deep/er/b.jpg") == IMG["b"]
    assert store.exists("wikiart/images/a.jpg") and not store.exists("wikiart/images/zzz.jpg")
    with pytest.raises(ImageError) as err:
        store.read("coco/train2017/404.jpg")
    assert err.value.reason == "image_missing"
    assert "coco/train2017/404.jpg" in err.value.detail
    assert str(coco) in err.value.detail and str(loose) in err.value.detail  # every root searched is named
    assert {s["location"]: s["duplicates"] for s in store.stats()}[str(web)] == 1


def test_store_reads_across_chunk_glob_first_chunk_wins(tmp_path):
    chunks = tmp_path / "image_chunks"
    chunks.mkdir()
    write_zip(chunks / "images_0.zip", [("images/100.jpeg", IMG["a"]), ("images/shared.jpeg", IMG["first"])])
    write_zip(chunks / "images_1.zip", [("images/200.jpeg", IMG["b"]), ("images/shared.jpeg", IMG["second"])])
    store = ImageStore([Root(str(chunks / "images_*.zip"), "allava_laion/images/", "images/")])
    assert store.read("allava_laion/images/200.jpeg") == IMG["b"]
    assert store.read("allava_laion/images/100.jpeg") == IMG["a"]
    assert store.read("allava_laion/images/shared.jpeg") == IMG["first"]
    assert store.stats()[0]["duplicates"] == 1 and store.stats()[0]["kind"] == "2 archive(s)"


def test_basename_member_prefix_matches_like_unzip_j(tmp_path):
    archive = write_zip(tmp_path / "images_0.zip", [("some/nested/dir/100.jpeg", IMG["a"]),
                                                     ("other/100.jpeg", IMG["b"])])
    store = ImageStore([Root(str(archive), "allava_laion/images/", "**/")])
    assert store.read("allava_laion/images/100.jpeg") == IMG["a"]  # first occurrence in archive order
    assert not store.exists("allava_laion/images/999.jpeg")


def test_directory_root_refuses_paths_that_leave_it(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(IMG["evil"])
    store = ImageStore([Root(str(root))])
    for path in ("../secret.jpg", "a/../../secret.jpg", "/etc/passwd"):
        with pytest.raises(ImageError) as err:
            store.read(path)
        assert err.value.reason == "image_path_unsafe"
    assert not store.exists("../secret.jpg")


def test_url_images_resolve_to_the_downloader_folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    url = "https://cdn.example.invalid/a/b.png?x=1"
    (images / url_filename(url)).write_bytes(IMG["a"])
    store = ImageStore([Root(str(images))])
    assert store.read(url) == IMG["a"]
    with pytest.raises(ImageError) as err:
        store.read("https://cdn.example.invalid/rotted.jpg")
    assert err.value.reason == "image_missing"
    assert url_filename("https://cdn.example.invalid/rotted.jpg") in err.value.detail


def test_corrupt_member_is_image_unreadable(tmp_path):
    path = write_zip(tmp_path / "c.zip", [("x.jpg", IMG["a"] * 4)], compression=zipfile.ZIP_DEFLATED)
    raw = bytearray(path.read_bytes())
    raw[60:70] = b"\x00" * 10  # inside the deflated data of the only member
    path.write_bytes(bytes(raw))
    store = ImageStore([Root(str(path))])
    with pytest.raises(ImageError) as err:
        store.read("x.jpg")
    assert err.value.reason == "image_unreadable" and "c.zip" in err.value.detail


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_concurrent_readers_get_the_right_bytes(tmp_path, kind):
    members = [(f"d/{i:03d}.jpg", make_image(f"img{i}")) for i in range(40)]
    path = write_zip(tmp_path / "m.zip", members) if kind == "zip" else write_tar(tmp_path / "m.tar", members)
    with Archive(path) as archive, ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda m: archive.read(m[0]), members * 5))
    assert got == [data for _, data in members * 5]
