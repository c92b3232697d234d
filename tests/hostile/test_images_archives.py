"""Hostile images and archives: one bad image costs its sample (a reject with the exact reason), never the
build; an archive that cannot be opened stops the build with one line naming it; a symlink out of an image
folder is never followed; memory stays bounded.

Real Pillow images and real zip/tar files, no mocks. The decompression bombs run in a child process under a
1.5 GiB address-space limit (RLIMIT_AS), set before the code under test is imported, so a bomb that got
inflated or decoded dies there with MemoryError instead of passing. The child renders with
`resampler="pillow"` and never imports torch: importing torch alone reserves ~0.6 GiB of address space
that it never touches, which would spend the limit on something other than images (the torch resize's
banded path is pixel for pixel the same as the plain one, which tests/test_images.py covers).

Run: pytest tests/hostile/test_images_archives.py  (about 30 s)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from imp_data.build import build
from imp_data.core.context import BuildContext
from imp_data.core.errors import ArchiveError, ImageError
from imp_data.core.limits import applied
from imp_data.core.recipe import Limits, load_recipe
from imp_data.fetch.image_store import ImageStore
from imp_data.fixtures import write_mirror
from imp_data.images import hash_image, render_image

REPO = Path(__file__).resolve().parents[2]
AS_LIMIT = 3 * 2**29  # 1.5 GiB of address space for the bomb cases
RSS_BOUND = 2**30  # and what they may touch: under 1 GiB
BLOCK = 1 << 20


class Root:
    """Duck-typed like recipe.ImageRoot."""

    def __init__(self, location, prefix: str = "", member_prefix: str = ""):
        self.location, self.prefix, self.member_prefix = str(location), prefix, member_prefix


# ---- real hostile bytes, made fast -----------------------------------------------------------------


def encode(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def dds(fourcc: bytes = b"ATC ") -> bytes:
    """A DirectDraw Surface whose pixel format Pillow recognises but does not implement (NotImplementedError)."""
    header = struct.pack("<4sI6I44xII4s5I20x", b"DDS ", 124, 0x1007, 16, 16, 0, 0, 0, 32, 0x4, fourcc, 0, 0, 0, 0, 0)
    return header + bytes(256)


def spider_stack_member() -> bytes:
    """A SPIDER file whose header says 'image inside a stack' without a stack: Pillow raises AttributeError."""
    data = bytearray(encode(Image.new("F", (16, 16), 3.0), "SPIDER"))
    data[104:108] = struct.pack("<f", 1.0)  # header word 27, the image number
    return bytes(data)


def deflate_zeros(n: int) -> bytes:
    """Raw deflate of n zero bytes in milliseconds: a full flush resets the compressor, so every 1 MiB block
    compresses to the same bytes; compress one and repeat it."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = co.compress(bytes(BLOCK)) + co.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(n, BLOCK)
    return block * count + co.compress(bytes(rest)) + co.flush()


def zlib_zeros(n: int) -> bytes:
    """A zlib stream of n zero bytes (the Adler-32 of zeros is (n mod 65521) << 16 | 1)."""
    return b"\x78\xda" + deflate_zeros(n) + struct.pack(">I", (n % 65521) << 16 | 1)


def png(width: int, height: int, color_type: int = 6, text_bomb: int = 0) -> bytes:
    """A real blank PNG (RGBA by default), optionally with a zTXt chunk inflating to `text_bomb` bytes."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    channels = {2: 3, 6: 4}[color_type]
    text = chunk(b"zTXt", b"Comment\0\0" + zlib_zeros(text_bomb)) if text_bomb else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))
            + text + chunk(b"IDAT", zlib_zeros(height * (1 + width * channels))) + chunk(b"IEND", b""))


def zip_of_zeros(path: Path, name: str, size: int, claimed: int | None = None) -> Path:
    """A real zip64 whose one member inflates to `size` zero bytes; its directory says `claimed` (a lie)."""
    payload, crc, zeros = deflate_zeros(size), 0, bytes(16 * BLOCK)
    for start in range(0, size, len(zeros)):
        crc = zlib.crc32(zeros[: size - start], crc)
    raw = name.encode()
    extra = struct.pack("<HHQQ", 1, 16, size if claimed is None else claimed, len(payload))  # zip64 sizes
    # flags, deflate, time, date (1980-01-01), CRC, both sizes in the zip64 extra, name and extra lengths
    fields = (0, 8, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(raw), len(extra))
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, *fields) + raw + extra
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, *fields, 0, 0, 0, 0, 0) + raw + extra
    path.write_bytes(local + payload + central
                     + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(payload), 0))
    return path


def cut_zip(path: Path) -> None:
    """A real zip cut short: its end (the central directory's last bytes and the end record) is missing."""
    zip_of_zeros(path, "a.jpg", 4 * BLOCK)
    path.write_bytes(path.read_bytes()[:-30])


def rezip(path: Path, replace: dict[str, bytes]) -> None:
    """Rewrite a zip with some members' bytes replaced (names, order and compression kept)."""
    with zipfile.ZipFile(path) as zf:
        members = [(info, replace.get(info.filename, zf.read(info))) for info in zf.infolist()]
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED if info.filename in replace else None)


def rejected(store: ImageStore, image: str) -> tuple[str, str]:
    """(reason, detail) of reading and rendering `image`, as the render stage would see it."""
    with pytest.raises(ImageError) as info:
        render_image(store.read(image), resolution=64, resampler="pillow")
    return info.value.reason, info.value.detail


# ---- per-image failures are rejects ------------------------------------------------------------------


@pytest.mark.parametrize("data, reason", [
    (dds(b"ATC "), "image_unsupported"),  # a FourCC Pillow has no decoder for
    (dds(b"DX10") + struct.pack("<5I", 99, 3, 0, 1, 0), "image_unsupported"),  # an unimplemented DXGI format
    (spider_stack_member(), "image_undecodable"),  # AttributeError inside Pillow's SPIDER plugin
], ids=["dds-atc", "dds-dx10", "spider-attributeerror"])
@pytest.mark.parametrize("where", ["directory", "zip"])
def test_any_decoder_failure_is_a_reject_with_its_reason(roots, data, reason, where):
    if where == "directory":
        (roots.data / "imgs").mkdir()
        (roots.data / "imgs" / "x.jpg").write_bytes(data)
        store = ImageStore([Root(roots.data / "imgs")])
    else:
        with zipfile.ZipFile(roots.data / "imgs.zip", "w") as zf:
            zf.writestr("x.jpg", data)
        store = ImageStore([Root(roots.data / "imgs.zip")])
    assert rejected(store, "x.jpg")[0] == reason
    with pytest.raises(ImageError) as info:
        hash_image(data)
    assert info.value.reason == reason
    store.close()


def test_symlinks_are_followed_only_inside_the_root(roots):
    root, outside = roots.data / "images", roots.data / "elsewhere"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(encode(Image.new("RGB", (8, 8), "red")))
    (root / "real" / "ok.jpg").write_bytes(encode(Image.new("RGB", (8, 8), "blue")))
    (root / "out.jpg").symlink_to(outside / "secret.jpg")  # a file link leaving the root
    (root / "outdir").symlink_to(outside, target_is_directory=True)  # a folder link leaving it
    (root / "alias.jpg").symlink_to(Path("real") / "ok.jpg")  # a link that stays inside
    (root / "dangling.jpg").symlink_to(root / "nothing.jpg")
    (roots.data / "linked-root").symlink_to(root, target_is_directory=True)
    store = ImageStore([Root(root)])
    for image in ("out.jpg", "outdir/secret.jpg"):
        with pytest.raises(ImageError) as info:
            store.read(image)
        assert info.value.reason == "image_outside_root" and "elsewhere" not in info.value.detail
        with pytest.raises(ImageError, match="image_outside_root"):  # nor is its content hashed
            store.identity(image, lambda path: pytest.fail(f"hashed {path}"))
    assert store.read("alias.jpg") == (root / "real" / "ok.jpg").read_bytes()
    assert ImageStore([Root(roots.data / "linked-root")]).read("real/ok.jpg") == store.read("alias.jpg")
    with pytest.raises(ImageError, match="image_missing"):
        store.read("dangling.jpg")


def test_caps_come_from_the_active_limits(roots):
    photo = encode(Image.new("RGB", (100, 100), "green"))  # a few hundred bytes, 10,000 pixels
    (roots.data / "imgs").mkdir()
    (roots.data / "imgs" / "x.jpg").write_bytes(photo)
    with tarfile.open(roots.data / "imgs.tar", "w") as tar:
        info = tarfile.TarInfo("x.jpg")
        info.size = len(photo)
        tar.addfile(info, io.BytesIO(photo))
    small = Limits(max_member_bytes=len(photo) - 1)
    for location in ("imgs", "imgs.tar"):
        store = ImageStore([Root(roots.data / location)])
        assert render_image(store.read("x.jpg"), resampler="pillow").orig_width == 100  # the defaults let it through
        with applied(small), pytest.raises(ImageError) as info:
            store.read("x.jpg")
        assert info.value.reason == "image_too_large", location
        store.close()
    with applied(Limits(max_image_pixels=9_999)), pytest.raises(ImageError, match="image_too_large: 100x100"):
        render_image(photo)


@pytest.mark.parametrize("make, kind", [
    (lambda p: p.write_bytes(b""), "zip"),
    (lambda p: p.write_bytes(encode(Image.new("RGB", (8, 8))) * 3), "zip"),  # no zip directory at all
    (cut_zip, "zip"),
    (lambda p: p.write_text("not a tar\n" * 100), "tar"),
    (lambda p: p.write_bytes(b""), "tar"),
], ids=["empty-zip", "jpeg-named-zip", "cut-short-zip", "text-named-tar", "empty-tar"])
def test_an_archive_that_will_not_open_is_one_line_naming_it(roots, make, kind):
    path = roots.data / f"images.{kind}"
    make(path)
    with pytest.raises(ArchiveError) as info:
        ImageStore([Root(path)])
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: not a readable {kind} archive")
    assert message.endswith("point the image root's location at the right file")


def test_a_bad_chunk_in_a_glob_is_named(roots):
    good = roots.data / "images_0.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("a.jpg", encode(Image.new("RGB", (8, 8))))
    (roots.data / "images_1.zip").write_bytes(good.read_bytes()[:40])
    with pytest.raises(ArchiveError, match=r"images_1\.zip: not a readable zip archive"):
        ImageStore([Root(roots.data / "images_*.zip")])


# ---- bombs, under an address-space limit ---------------------------------------------------------------

_CAPPED = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
job = json.loads(sys.argv[1])
from imp_data.core.errors import ImageError
from imp_data.fetch.image_store import ImageStore
from imp_data.images import render_image
from imp_data.core.limits import applied

class Root:
    def __init__(self, location):
        self.location, self.prefix, self.member_prefix = location, "", ""

with applied(job["limits"]):
    store = ImageStore([Root(job["location"])])
    try:
        out = render_image(store.read(job["image"]), resolution=384, mode=job["mode"], resampler="pillow")
        result = {{"reason": None, "size": [out.orig_width, out.orig_height]}}
    except ImageError as err:
        result = {{"reason": err.reason, "detail": err.detail}}
result["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(result))
"""


def run_capped(location: Path, image: str, limits: dict | None = None, mode: str = "pad") -> dict:
    """Read and render one image in a child under the address-space limit; its outcome and peak RSS."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    job = json.dumps({"location": str(location), "image": image, "limits": limits or {}, "mode": mode})
    proc = subprocess.run([sys.executable, "-c", _CAPPED.format(limit=AS_LIMIT), job], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["maxrss"] < RSS_BOUND, result
    return result


@pytest.fixture(scope="module")
def two_gib_zip(tmp_path_factory) -> Path:
    """2 MB on disk, one 2 GiB member (read only under the limit; module-scoped: it takes a second)."""
    return zip_of_zeros(tmp_path_factory.mktemp("bomb") / "bomb.zip", "bomb.png", 2 * 2**30)


def test_a_2gib_member_is_refused_from_the_zip_directory(two_gib_zip):
    assert two_gib_zip.stat().st_size < 3 * 2**20
    assert run_capped(two_gib_zip, "bomb.png")["reason"] == "image_too_large"
    # past the size cap, the ratio still gives it away: 2 GiB from 2 MB
    roomy = run_capped(two_gib_zip, "bomb.png", {"max_member_bytes": 4 * 2**30})
    assert roomy["reason"] == "image_bomb" and "limits.max_compression_ratio" in roomy["detail"]


def test_a_zip_directory_that_lies_costs_no_more_than_its_claim(roots):
    liar = zip_of_zeros(roots.data / "liar.zip", "small.png", 2 * 2**30, claimed=2**20)
    result = run_capped(liar, "small.png")  # 1 MiB claimed passes both caps; the inflate stops there
    assert result["reason"] == "image_unreadable" and "CRC" in result["detail"]


def test_a_png_past_the_pixel_cap_is_refused_before_decoding(roots):
    (roots.data / "imgs").mkdir()
    (roots.data / "imgs" / "wide.png").write_bytes(png(12_000, 8_000))  # 96 MP > 89,478,485, 380 KB on disk
    result = run_capped(roots.data / "imgs", "wide.png")
    assert result["reason"] == "image_too_large" and "12000x8000" in result["detail"]


def test_an_88_megapixel_png_renders_within_the_memory_bound(roots):
    """88 MP RGBA (within the default cap) cost 1.3 GB before; now the decode plus one RGB copy, under 1 GiB.
    A recipe with a lower cap refuses it before decoding."""
    (roots.data / "imgs").mkdir()
    (roots.data / "imgs" / "big.png").write_bytes(png(11_000, 8_000))
    assert run_capped(roots.data / "imgs", "big.png")["size"] == [11_000, 8_000]
    capped = run_capped(roots.data / "imgs", "big.png", {"max_image_pixels": 50_000_000})
    assert capped["reason"] == "image_too_large"


def test_a_long_strip_in_expand2square_stays_bounded(roots):
    """45 MP, but padded to its square it was 900 M pixels (3.6 GB); now box-reduced before padding."""
    (roots.data / "imgs").mkdir()
    (roots.data / "imgs" / "strip.png").write_bytes(png(30_000, 1_500, color_type=2))
    assert run_capped(roots.data / "imgs", "strip.png", mode="expand2square")["size"] == [30_000, 1_500]


def test_banded_conversion_and_resize_give_the_same_bytes(monkeypatch):
    """The bounded-memory path (band by band past LARGE_PIXELS) renders exactly what the one-shot path
    does, so a cached render never depends on which path made it; forced here on small images."""
    from imp_data import images

    rgba = Image.linear_gradient("L").resize((300, 200)).convert("RGB")
    rgba.putalpha(Image.linear_gradient("L").rotate(90).resize((300, 200)))
    rotated, exif = io.BytesIO(), Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: transposed in place before the bands
    rgba.convert("RGB").save(rotated, "JPEG", exif=exif.tobytes())
    sixteen = Image.fromarray(np.asarray(rgba.getchannel(0), np.uint16) * 257)
    cases = [encode(rgba, "PNG"), encode(rgba.convert("P", palette=Image.ADAPTIVE), "PNG"), encode(sixteen, "PNG"),
             rotated.getvalue()]
    settings = [{"mode": m, "resampler": r, "resolution": 96} for m in ("pad", "squash", "expand2square")
                for r in ("torch", "pillow")]
    plain = [render_image(data, **kw).jpeg for data in cases for kw in settings]
    monkeypatch.setattr(images, "LARGE_PIXELS", 1000)
    monkeypatch.setattr(images, "BAND_PIXELS", 4000)  # bands of 13 to 20 rows, the last one short
    assert [render_image(data, **kw).jpeg for data in cases for kw in settings] == plain


def test_a_png_text_chunk_bomb_is_a_reject(roots):
    (roots.data / "imgs").mkdir()
    (roots.data / "imgs" / "text.png").write_bytes(png(8, 8, text_bomb=2**30))  # 1 GiB comment in 1 MB
    assert run_capped(roots.data / "imgs", "text.png")["reason"] == "image_undecodable"


# ---- through a real build ------------------------------------------------------------------------------


HOSTILE_IMAGES = {"1400319900X": "image_unsupported", "1400319902X": "image_undecodable",
                  "1400319901X": "image_outside_root", "000000000103": "image_bomb"}  # LLaVA-665K ids


def plant_hostile_images(mirror: Path, data_root: Path) -> Path:
    """Into a demo mirror: DDS bytes and an undecodable file as OCR-VQA images, a symlink to a file outside
    every image root, and a zip bomb member in COCO's zip (HOSTILE_IMAGES); returns the outside file."""
    ocr = mirror / "ocr_vqa" / "images"
    (ocr / "1400319900X.jpg").write_bytes(dds())
    (ocr / "1400319902X.jpg").write_bytes(spider_stack_member())
    secret = data_root / "secret.jpg"  # inside the data root, outside every image root
    secret.write_bytes(encode(Image.new("RGB", (40, 30), "orange")))
    (ocr / "1400319901X.jpg").unlink()
    (ocr / "1400319901X.jpg").symlink_to(secret)
    rezip(mirror / "coco" / "train2017.zip", {"train2017/000000000103.jpg": bytes(64 * 2**20)})  # 64 MiB, ~64 KB
    return secret


def test_demo_build_rejects_hostile_images_and_balances(roots):
    mirror = roots.data / "mirror"
    write_mirror(mirror, scale=1, seed=0)
    secret = plant_hostile_images(mirror, roots.data)

    build(BuildContext(recipe=load_recipe(REPO / "manifests" / "demo.yaml"), data_root=roots.data, progress=False))

    mix = roots.data / "mixes" / "demo_stage2"
    rejects = pl.read_parquet(mix / "rejects.parquet").filter(pl.col("stage") == "render")
    reasons = dict(zip(rejects["id"], rejects["reason"]))
    assert {i: reasons.get(f"llava_665k/{i}") for i in HOSTILE_IMAGES} == HOSTILE_IMAGES
    renders = pl.read_parquet(mix / "renders.parquet")
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in renders["sha256"].to_list()
    for name in ("demo_stage1", "demo_stage2"):  # every record is in a shard or in rejects, exactly once
        stats = json.loads((roots.data / "mixes" / name / "stats.json").read_text())
        index = pl.read_parquet(roots.data / "mixes" / name / "index.parquet")
        all_rejects = pl.read_parquet(roots.data / "mixes" / name / "rejects.parquet")
        for source, entry in stats["sources"].items():
            kept = index.filter(pl.col("source") == source).height
            assert kept + all_rejects.filter(pl.col("source") == source).height == entry["read"], (name, source)


def test_demo_build_stops_with_one_line_on_a_cut_short_zip(roots):
    mirror = roots.data / "mirror"
    write_mirror(mirror, scale=1, seed=0)
    archive = mirror / "llava_pretrain" / "images.zip"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ArchiveError) as info:
        build(BuildContext(recipe=load_recipe(REPO / "manifests" / "demo.yaml"), data_root=roots.data,
                           progress=False))
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{archive}: not a readable zip archive")
