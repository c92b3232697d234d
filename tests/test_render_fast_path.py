"""The render fast path (`imp_data.images`): a 4000x3000 JPEG of a real photo (scikit-image's `coffee`,
upscaled) is decoded by libjpeg at 1/8 scale, yet its rendering has the geometry of a full decode — the
same pad bands, the same content within JPEG tolerance — for the torch and the Pillow resampler and for an
EXIF-rotated copy; its phash is within 2 bits of imagehash's phash of the full image; and `hash_image`
gives exactly `render_image`'s phash, also when the render needs a finer decode than the hash.

Run: pytest tests/test_render_fast_path.py
"""

from __future__ import annotations

import io

import imagehash
import numpy as np
import pytest
from PIL import Image

from imp_data import images
from imp_data.images import hash_image, render_image

skimage_data = pytest.importorskip("skimage.data")

R = 384


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """`coffee` (600x400) cropped to 4:3 and upscaled to 4000x3000, as a decoded image."""
    img = Image.fromarray(skimage_data.coffee()).crop((33, 0, 567, 400))
    return img.resize((4000, 3000), Image.BICUBIC)


@pytest.fixture(scope="module")
def source(photo) -> bytes:
    return _jpeg(photo)


def _reference(photo: Image.Image) -> np.ndarray:
    """What a full decode would render: 384x288 bicubic content on rows 48..335 of a grey canvas."""
    canvas = Image.new("RGB", (R, R), (127, 127, 127))
    canvas.paste(photo.resize((R, 288), Image.BICUBIC), (0, 48))
    return np.asarray(canvas, dtype=np.int16)


@pytest.mark.parametrize("resampler", ["torch", "pillow"])
def test_draft_decode_keeps_geometry_and_hash(photo, source, resampler):
    header = Image.open(io.BytesIO(source))
    assert images._dct_scale(header, images._request(header, 1, R, both=False)) == 8  # 500x375 decode

    out = render_image(source, resampler=resampler)
    assert (out.width, out.height, out.orig_width, out.orig_height) == (R, R, 4000, 3000)
    got = np.asarray(Image.open(io.BytesIO(out.jpeg)).convert("RGB"), dtype=np.int16)
    diff = np.abs(got - _reference(photo))
    assert diff[:46].max() <= 4 and diff[338:].max() <= 4, "pad bands moved"  # 2 rows of JPEG ringing
    assert diff[50:334].mean() < 3, diff[50:334].mean()

    full = imagehash.phash(Image.open(io.BytesIO(source)).convert("RGB"))
    assert full - imagehash.hex_to_hash(out.phash) <= 2
    assert hash_image(source) == (out.sha256, out.phash)


def test_exif_rotated_source_pads_left_and_right(photo, source):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait (rotate 90 degrees clockwise)
    rotated = _jpeg(photo, exif=exif)
    out = render_image(rotated, exif_transpose=True)  # the upright frame when asked (default: the stored one)
    assert (out.orig_width, out.orig_height) == (3000, 4000)
    got = np.asarray(Image.open(io.BytesIO(out.jpeg)).convert("RGB"), dtype=np.int16)
    want = np.asarray(Image.fromarray(_reference(photo).astype(np.uint8)).transpose(Image.Transpose.ROTATE_270),
                      dtype=np.int16)
    diff = np.abs(got - want)
    assert diff[:, :46].max() <= 4 and diff[:, 338:].max() <= 4 and diff[:, 50:334].mean() < 3
    assert hash_image(rotated, exif_transpose=True)[1] == out.phash
    stored = render_image(rotated)
    assert (stored.orig_width, stored.orig_height) == (4000, 3000) and hash_image(rotated)[1] == stored.phash


@pytest.mark.parametrize("resolution, mode", [(64, "pad"), (512, "pad"), (R, "squash"), (R, "expand2square")])
def test_phash_does_not_depend_on_render_settings(source, resolution, mode):
    """512 and squash need a finer decode than the hash's; the hash still comes from its own decode."""
    assert render_image(source, resolution=resolution, mode=mode, fill=(0, 0, 0)).phash == hash_image(source)[1]
