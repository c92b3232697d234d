"""Render one image for the shards: decode once, hash, resize-then-pad, encode JPEG.

One entry point, `render_image`. The single decode feeds both the perceptual hash (dedup and
decontamination) and the rendering, so a corpus is decoded once. Large JPEGs are decoded with libjpeg's
DCT scaling (`Image.draft`: 1/2, 1/4, 1/8) straight to the smallest size whose longer side still covers
the output, which is most of the speed. The phash is taken from a decode whose scale depends only on the
source (longer side >= `HASH_SIDE`), never on the render settings, so the same bytes always hash the same
(`hash_image` for benchmark sets, `render_image` for training images); at the default 384 px both are
the same decode. The bicubic resize (`resampler`) is torch's uint8 antialiased kernel by default: the
same filter as Pillow's (pixel values within 1), ~4x faster where the CPU has its SIMD path (x86 AVX2 or
AVX-512), and integer arithmetic whose bytes do not depend on the CPU (AVX-512, AVX2 and the scalar
kernel agree; `tests/test_images.py` checks), so a build is byte-identical across machines. `pillow`
uses Pillow's own resize instead (faster than torch's scalar kernel on CPUs without AVX2).

Untrusted bytes: whatever decoding one image raises becomes `ImageError` with a short reason that the build
writes to the rejects table (`image_unsupported` for a format Pillow recognises but cannot decode, such as
a DDS texture named `.jpg`), never an exception that ends the build. Memory stays near two full-size copies
of an image at the pixel cap (`limits.max_image_pixels`): the decode itself, plus one RGB image; mode
conversion and torch's resize run in bands of rows over images past `LARGE_PIXELS` (pixel for pixel the
same bytes), and `expand2square` shrinks an image whose padded square would pass `MAX_SQUARE_SIDE` first.

Geometry (docs/design.md §4, docs/training.md §1):
- `pad` (default, the paper's resize-then-pad): longer side -> resolution (aspect kept, the other side
  `max(1, round(side * scale))`), bicubic, pasted at floor offsets `(R - new) // 2` on an R x R canvas of
  `fill`.
- `squash`: straight bicubic resize to R x R (Imp's released code).
- `expand2square`: LLaVA-1.5 — pad to a square of the longer side with `fill` at floor offsets, then
  resize to R x R.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imp_data.core.errors import ImageError
from imp_data.core.limits import active

MODES = ("pad", "squash", "expand2square")
RESAMPLERS = ("torch", "pillow")
MAX_PIXELS = 89_478_485  # PIL's own default bomb limit (~ 0.25 GiB of RGB); builds use `limits.max_image_pixels`
LARGE_PIXELS = 1 << 24  # past this, conversions and torch's resize go band by band (no full-size temporaries)
BAND_PIXELS = 1 << 22  # pixels per band of rows
MAX_SQUARE_SIDE = 8192  # expand2square: a longer side past this is box-reduced before padding (bounded square)
TORCH_PASS_PIXELS = 1 << 26  # torch resizes rows first, keeping height x new width pixels; past this, Pillow
HASH_SIDE = 384  # the phash's decode covers this longer side: a function of the source alone, never of `resolution`
HASH_FILL = (127, 127, 127)  # alpha is composited on this for the phash, whatever the render's `fill`
_TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class RenderedImage:
    """The rendering of one source image, with the hashes of the same decode."""

    jpeg: bytes
    width: int
    height: int
    orig_width: int  # after EXIF orientation when applied, before any resizing
    orig_height: int
    sha256: str  # of the source bytes
    phash: str  # imagehash.phash (16 hex digits) of the decode at HASH_SIDE: depends on the bytes alone
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
    except NotImplementedError as err:  # recognised, e.g. a DDS pixel format Pillow does not implement
        raise ImageError("image_unsupported", _say(err)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        head = data[:15].lstrip().lower()
        kind = "HTML/text, not an image" if head.startswith((b"<", b"{")) else f"unrecognised data ({_say(err, False)})"
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
    """Any PIL mode -> RGB; alpha is composited on the fill colour, 16-bit is scaled (not clipped). A large
    image converts band by band into one RGB image: every step is per pixel, so the bytes are the same."""
    if img.mode == "RGB":
        return img
    w, h = img.size
    peak = 65535 if img.mode.startswith("I;16") else 255
    if img.mode == "I":
        extrema = img.getextrema()
        peak = 65535 if extrema and extrema[1] > 255 else 255
    if w * h <= LARGE_PIXELS:
        return _convert(img, fill, peak)
    out = Image.new("RGB", img.size)
    rows = max(1, BAND_PIXELS // w)
    for top in range(0, h, rows):
        out.paste(_convert(img.crop((0, top, w, min(h, top + rows))), fill, peak), (0, top))
    return out


def _convert(img: Image.Image, fill: tuple[int, int, int], peak: int) -> Image.Image:
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img)
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
    return img.convert("RGB")  # RGB (from P), L, 1, CMYK (Adobe-inverted handled by PIL), YCbCr, LAB, HSV


def _request(img: Image.Image, orientation: int, side: int, both: bool) -> tuple[int, int]:
    """The size (stored orientation) a decode must cover: longer side >= `side`, or both sides if `both`."""
    w, h = img.size
    if orientation in _TRANSPOSED:
        w, h = h, w
    tw, th = (side, side) if both else _content_size(w, h, side)
    return (th, tw) if orientation in _TRANSPOSED else (tw, th)


def _dct_scale(img: Image.Image, request: tuple[int, int]) -> int:
    """The JPEG scale denominator `Image.draft(mode, request)` will choose (Pillow's own rule)."""
    if img.format != "JPEG":
        return 1
    ratio = min(img.width // request[0], img.height // request[1])
    return next((s for s in (8, 4, 2) if ratio >= s), 1)


def _decode(img: Image.Image, request: tuple[int, int], orientation: int) -> Image.Image:
    """Load pixels (a JPEG DCT-scaled to the smallest size covering `request`), oriented upright."""
    if img.format == "JPEG":
        img.draft(img.mode if img.mode in ("L", "RGB", "CMYK") else None, request)
    try:
        img.load()
    except OSError as err:
        if "not available" in str(err):  # e.g. "decoder jpeg2k not available": a format this Pillow lacks
            raise ImageError("image_unsupported", str(err)) from None
        truncated = "truncated" in str(err) or "broken data stream" in str(err)
        raise ImageError("image_truncated" if truncated else "image_undecodable", str(err)) from None
    except (SyntaxError, ValueError, EOFError) as err:
        raise ImageError("image_undecodable", str(err)) from None
    try:
        if orientation != 1:
            ImageOps.exif_transpose(img, in_place=True)  # in place: the unrotated pixels are freed at once
        return img
    except (OSError, ValueError) as err:
        raise ImageError("image_undecodable", str(err)) from None


def _phash(img: Image.Image) -> str:
    """imagehash.phash of an RGB image. The 32x32 it transforms is made box-reduce-then-Lanczos and in RGB
    (`reducing_gap`), then turned grey: a few times cheaper than imagehash's full-size grey Lanczos, and
    within 2 bits of it on real photos (bench/render.py prints the distances)."""
    return str(imagehash.phash(img.resize((32, 32), Image.LANCZOS, reducing_gap=2.0).convert("L")))


@functools.cache
def _torch():
    """torch, imported on first use (only rendering processes pay for it); None if it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def has_simd_resampler() -> bool:
    """Whether torch's uint8 antialiased resize has a SIMD kernel on this CPU (x86 AVX2 / AVX-512)."""
    torch = _torch()
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")() if torch else "DEFAULT"
    return capability in ("AVX2", "AVX512")


def _resize(img: Image.Image, size: tuple[int, int], resampler: str) -> Image.Image:
    """Bicubic resize of an RGB image, antialiased when shrinking (Pillow's filter either way). Pillow's own
    resize serves torch's corner cases: tiny images, and a horizontal pass (torch runs it first, keeping
    `height x new width` pixels) past `TORCH_PASS_PIXELS`, which only a freakishly tall squash would need."""
    torch = _torch() if resampler == "torch" else None
    w, h = img.size
    if torch is None or img.mode != "RGB" or min(img.size) < 8 or h * size[0] > TORCH_PASS_PIXELS:
        return img.resize(size, Image.BICUBIC, reducing_gap=3.0)
    interpolate = functools.partial(torch.nn.functional.interpolate, mode="bicubic", antialias=True)
    if w * h <= LARGE_PIXELS:
        pixels = _pixels(torch, img)
    else:  # torch's separable kernel: horizontal pass band by band, then its vertical pass; the same bytes
        rows = max(1, BAND_PIXELS // w)
        bands = [interpolate(_pixels(torch, img.crop((0, t, w, min(h, t + rows)))), size=(min(h, t + rows) - t,
                                                                                            size[0]))
                 for t in range(0, h, rows)]
        pixels = torch.cat(bands, dim=2).contiguous(memory_format=torch.channels_last)
    out = interpolate(pixels, size=(size[1], size[0]))
    return Image.frombytes("RGB", size, out.permute(0, 2, 3, 1).contiguous().numpy(), "raw", "RGBX")


def _pixels(torch, img: Image.Image):
    """An RGB image as a uint8 NCHW tensor over its RGBX bytes (channels-last memory)."""
    w, h = img.size
    try:  # Pillow >= 11.2 exports its 4-byte RGBX pixels without a copy
        import pyarrow as pa

        flat = pa.array(img).flatten().to_numpy(zero_copy_only=True)
    except Exception:
        flat = np.frombuffer(img.tobytes("raw", "RGBX"), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a read-only buffer: torch only reads it
        return torch.from_numpy(flat).view(1, h, w, 4).permute(0, 3, 1, 2)


def _geometry(img: Image.Image, resolution: int, mode: str, fill: tuple[int, int, int], resampler: str) -> Image.Image:
    w, h = img.size
    if mode == "squash":
        return _resize(img, (resolution, resolution), resampler)
    if mode == "expand2square":
        if max(w, h) > MAX_SQUARE_SIDE:  # 40000x2000 would pad to 1.6 G pixels: box-reduce it first
            img = img.reduce(-(-max(w, h) // MAX_SQUARE_SIDE))
            w, h = img.size
        side = max(w, h)
        if w != h:
            square = Image.new("RGB", (side, side), fill)
            square.paste(img, ((side - w) // 2, (side - h) // 2))
            img = square
        return _resize(img, (resolution, resolution), resampler)
    nw, nh = _content_size(w, h, resolution)
    content = _resize(img, (nw, nh), resampler) if (nw, nh) != (w, h) else img
    if (nw, nh) == (resolution, resolution):
        return content
    canvas = Image.new("RGB", (resolution, resolution), fill)
    canvas.paste(content, ((resolution - nw) // 2, (resolution - nh) // 2))
    return canvas


@contextmanager
def _as_reject() -> Iterator[None]:
    """Whatever decoding one image's bytes raises becomes that image's `ImageError`: a decoder's bug or an
    exotic format costs one sample, never the build. MemoryError is the machine's, not the image's."""
    try:
        yield
    except (ImageError, MemoryError):
        raise
    except NotImplementedError as err:
        raise ImageError("image_unsupported", _say(err)) from None
    except (OSError, ValueError) as err:  # a pixel-level failure after a good header
        raise ImageError("image_undecodable", str(err)) from None
    except Exception as err:  # noqa: BLE001 - the point: no decoder failure escapes
        raise ImageError("image_undecodable", _say(err)) from None


def _say(err: BaseException, typed: bool = True) -> str:
    """An exception as one line of reject detail, without object addresses (`<_io.BytesIO object at
    0x7f…>`): details land in the rejects table, which two builds must write byte for byte."""
    text = f"{type(err).__name__}: {err}" if typed else str(err)
    return " ".join(re.sub(r" at 0x[0-9a-fA-F]+", "", text).split())


def render_image(
    data: bytes,
    *,
    resolution: int = 384,
    mode: str = "pad",
    fill: tuple[int, int, int] = (127, 127, 127),
    quality: int = 95,
    resampler: str = "torch",
    max_pixels: int | None = None,
    exif_transpose: bool = False,
) -> RenderedImage:
    """Decode `data` once and return its rendering plus sha256 and phash. `max_pixels` defaults to the
    active `limits.max_image_pixels` (the recipe's during a build). `exif_transpose` applies the EXIF
    orientation first; off by default, as LLaVA and Imp load images (and as the box coordinates of
    LLaVA's region-level conversations assume: they refer to the stored pixel frame).

    Raises:
        ImageError: reason `image_empty`, `image_undecodable`, `image_truncated`, `image_unsupported` or
            `image_too_large` — for any failure of these bytes, whatever the decoder raised.

    Example:
        >>> buf = io.BytesIO(); Image.new("RGB", (400, 100), (255, 0, 0)).save(buf, "PNG")
        >>> out = render_image(buf.getvalue(), resolution=384)
        >>> (out.width, out.height, out.orig_width, out.orig_height)
        (384, 384, 400, 100)
    """
    if mode not in MODES:
        raise ValueError(f"unknown image mode {mode!r}; valid: {', '.join(MODES)}")
    if resampler not in RESAMPLERS:
        raise ValueError(f"unknown resampler {resampler!r}; valid: {', '.join(RESAMPLERS)}")
    fill = tuple(int(c) for c in fill)
    max_pixels = max_pixels or active().max_image_pixels
    with _as_reject():
        img = _open(data, max_pixels)
        orig_mode, orig_format = img.mode, img.format or "unknown"
        orientation = _orientation(img) if exif_transpose else 1
        full_w, full_h = (img.height, img.width) if orientation in _TRANSPOSED else img.size  # before draft()
        hash_request = _request(img, orientation, HASH_SIDE, both=False)
        render_request = _request(img, orientation, resolution, both=mode == "squash")
        # One decode serves both when the hash's scale is at least as fine as the render needs (always at
        # resolution <= HASH_SIDE outside squash); otherwise the render decodes finer and the hash decodes apart.
        shared = _dct_scale(img, render_request) >= _dct_scale(img, hash_request)
        decoded = _decode(img, hash_request if shared else render_request, orientation)
        del img  # `decoded` is the same image; one name, so `del decoded` frees it
        phash = None
        if not shared:
            phash = hash_image(data, max_pixels=max_pixels, exif_transpose=exif_transpose)[1]
        elif fill != HASH_FILL and decoded.mode != "RGB":  # the hash's own compositing, dropped before the render's
            phash = _phash(_to_rgb(decoded, HASH_FILL))
        rgb = _to_rgb(decoded, fill)
        del decoded  # a converted image is a copy: the decode's pixels go before the resize
        phash = phash or _phash(rgb)
        out = _geometry(rgb, resolution, mode, fill, resampler)
        del rgb
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=quality, optimize=False, subsampling=0 if quality >= 90 else 2)
    return RenderedImage(jpeg=buf.getvalue(), width=out.width, height=out.height, orig_width=full_w,
                         orig_height=full_h, sha256=hashlib.sha256(data).hexdigest(), phash=phash,
                         orig_mode=orig_mode, orig_format=orig_format)


def hash_image(data: bytes, *, max_pixels: int | None = None, exif_transpose: bool = False) -> tuple[str, str]:
    """(sha256, phash) of an image without rendering it — for benchmark image sets. The decode and the hash
    are `render_image`'s own, so the same bytes (and the same `exif_transpose`) give the same phash here
    and in a render.

    Example:
        >>> buf = io.BytesIO(); Image.new("RGB", (64, 48), (0, 128, 255)).save(buf, "PNG")
        >>> hash_image(buf.getvalue())[1] == render_image(buf.getvalue(), resolution=32).phash
        True
    """
    with _as_reject():
        img = _open(data, max_pixels or active().max_image_pixels)
        orientation = _orientation(img) if exif_transpose else 1
        decoded = _decode(img, _request(img, orientation, HASH_SIDE, both=False), orientation)
        return hashlib.sha256(data).hexdigest(), _phash(_to_rgb(decoded, HASH_FILL))
