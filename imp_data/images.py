"""Render one image for the shards: decode once, hash, resize-then-pad, encode JPEG.

One entry point, `render_image`. The single decode feeds both the perceptual hash (dedup and
decontamination) and the rendering, so a corpus is decoded once. Large JPEGs are decoded with libjpeg's
DCT scaling (`Image.draft`) straight to the smallest size that is still at least what the output and
the hash need, which is most of the speed. Undecodable input raises `ImageError` with a short reason
that the build writes to the rejects table.

Geometry (DESIGN §4, TRAINING §1):
- `pad` (default, the paper's resize-then-pad): longer side -> resolution (aspect kept, the other side
  `max(1, round(side * scale))`), bicubic, pasted at floor offsets `(R - new) // 2` on an R x R canvas of
  `fill`.
- `squash`: straight bicubic resize to R x R (Imp's released code).
- `expand2square`: LLaVA-1.5 — pad to a square of the longer side with `fill` at floor offsets, then
  resize to R x R.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imp_data.errors import ImageError

MODES = ("pad", "squash", "expand2square")
MAX_PIXELS = 89_478_485  # PIL's own default bomb limit (~ 0.25 GiB of RGB)
HASH_MIN_SIDE = 256  # decode at least this large for the hash, so phash does not depend on `resolution`
_TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class RenderedImage:
    """The rendering of one source image, with the hashes of the same decode."""

    jpeg: bytes
    width: int
    height: int
    orig_width: int  # after EXIF orientation, before any resizing
    orig_height: int
    sha256: str  # of the source bytes
    phash: str  # imagehash.phash of the decoded image, 16 hex digits
    orig_mode: str
    orig_format: str


def _content_size(w: int, h: int, resolution: int) -> tuple[int, int]:
    scale = resolution / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageError("image_empty", "zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ImageError("image_too_large", str(err)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        head = data[:15].lstrip().lower()
        kind = "HTML/text, not an image" if head.startswith((b"<", b"{")) else f"unrecognised data ({err})"
        raise ImageError("image_undecodable", kind) from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError("image_too_large", f"{w}x{h} = {w * h:,} pixels > limit {max_pixels:,}")
    return img


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block must not make a good image unreadable
        return 1


def _to_rgb(img: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Any PIL mode -> RGB; alpha is composited on the fill colour, 16-bit is scaled (not clipped)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img)
        peak = 65535 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255
        arr = np.clip(arr.astype(np.float64) * (255.0 / peak), 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "F":
        arr = np.clip(np.asarray(img), 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, fill)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")  # L, 1, CMYK (Adobe-inverted handled by PIL), YCbCr, LAB, HSV


def _decode(img: Image.Image, resolution: int, mode: str) -> tuple[Image.Image, int]:
    """Load pixels (JPEG: DCT-scaled to the smallest size still large enough); return (image, orientation)."""
    orientation = _orientation(img)
    w, h = img.size
    if orientation in _TRANSPOSED:
        w, h = h, w
    if img.format == "JPEG":
        need = max(resolution, HASH_MIN_SIDE)
        tw, th = (need, need) if mode == "squash" else _content_size(w, h, need)
        if orientation in _TRANSPOSED:
            tw, th = th, tw
        img.draft(img.mode if img.mode in ("L", "RGB", "CMYK") else None, (tw, th))
    try:
        img.load()
    except OSError as err:
        reason = "image_truncated" if "truncated" in str(err) or "broken data stream" in str(err) else "image_undecodable"
        raise ImageError(reason, str(err)) from None
    except (SyntaxError, ValueError, EOFError) as err:
        raise ImageError("image_undecodable", str(err)) from None
    return img, orientation


def _geometry(img: Image.Image, resolution: int, mode: str, fill: tuple[int, int, int]) -> Image.Image:
    w, h = img.size
    if mode == "squash":
        return img.resize((resolution, resolution), Image.BICUBIC, reducing_gap=3.0)
    if mode == "expand2square":
        side = max(w, h)
        if w != h:
            square = Image.new("RGB", (side, side), fill)
            square.paste(img, ((side - w) // 2, (side - h) // 2))
            img = square
        return img.resize((resolution, resolution), Image.BICUBIC, reducing_gap=3.0)
    nw, nh = _content_size(w, h, resolution)
    content = img.resize((nw, nh), Image.BICUBIC, reducing_gap=3.0) if (nw, nh) != (w, h) else img
    if (nw, nh) == (resolution, resolution):
        return content
    canvas = Image.new("RGB", (resolution, resolution), fill)
    canvas.paste(content, ((resolution - nw) // 2, (resolution - nh) // 2))
    return canvas


def render_image(
    data: bytes,
    *,
    resolution: int = 384,
    mode: str = "pad",
    fill: tuple[int, int, int] = (127, 127, 127),
    quality: int = 95,
    max_pixels: int = MAX_PIXELS,
) -> RenderedImage:
    """Decode `data` once and return its rendering plus sha256 and phash.

    Raises:
        ImageError: reason `image_empty`, `image_undecodable`, `image_truncated` or `image_too_large`.

    Example:
        >>> buf = io.BytesIO(); Image.new("RGB", (400, 100), (255, 0, 0)).save(buf, "PNG")
        >>> out = render_image(buf.getvalue(), resolution=384)
        >>> (out.width, out.height, out.orig_width, out.orig_height)
        (384, 384, 400, 100)
    """
    if mode not in MODES:
        raise ValueError(f"unknown image mode {mode!r}; valid: {', '.join(MODES)}")
    fill = tuple(int(c) for c in fill)
    img = _open(data, max_pixels)
    orig_mode, orig_format = img.mode, img.format or "unknown"
    full_w, full_h = img.size  # before draft() shrinks it
    img, orientation = _decode(img, resolution, mode)
    if orientation in _TRANSPOSED:
        full_w, full_h = full_h, full_w
    try:
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        rgb = _to_rgb(img, fill)
        phash = str(imagehash.phash(rgb))
        out = _geometry(rgb, resolution, mode, fill)
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=quality, optimize=False, subsampling=0 if quality >= 90 else 2)
    except (OSError, ValueError) as err:  # a pixel-level failure after a good header
        raise ImageError("image_undecodable", str(err)) from None
    return RenderedImage(jpeg=buf.getvalue(), width=out.width, height=out.height, orig_width=full_w,
                         orig_height=full_h, sha256=hashlib.sha256(data).hexdigest(), phash=phash,
                         orig_mode=orig_mode, orig_format=orig_format)


def hash_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> tuple[str, str]:
    """(sha256, phash) of an image without rendering it — for benchmark image sets, hashed by the same
    decode path as `render_image` so training and benchmark hashes compare."""
    img = _open(data, max_pixels)
    img, orientation = _decode(img, HASH_MIN_SIDE, "pad")
    if orientation != 1:
        img = ImageOps.exif_transpose(img)
    return hashlib.sha256(data).hexdigest(), str(imagehash.phash(_to_rgb(img, (127, 127, 127))))
