"""Render benchmark: `imp_data.images.render_image` against img2dataset's `Resizer`, per core, same bytes.

Corpus: scikit-image's bundled photographs (`skimage.data`, no download), centre-cropped to 4:3 and
re-encoded as 640x480 and 1024x768 JPEGs (quality 90, 4:2:0, like web photos). Both sides get the same
bytes and produce a 384x384 letterboxed JPEG at quality 95: ours with resize-then-pad (`mode="pad"`)
plus sha256 and phash of the same decode, img2dataset with `resize_mode="border"`. Each side runs on one
thread (OpenCV is told so; Pillow and torch's uint8 resampler run single-threaded, OMP_NUM_THREADS=1) and
the timed runs alternate A, B, A, B so that load from other processes on the machine hits both alike; the
median of each is reported. At 640x480 no DCT scale keeps 384 px, so both sides decode the whole JPEG
(about half of either's time) and the ratio stays near 1; from 1024x768 up libjpeg decodes at 1/2 or less.

It also prints how far our phash is from `imagehash.phash` of the fully decoded image (draft-mode decode
and hash), and checks that `hash_image` gives the same phash as `render_image` for the same bytes.

img2dataset is a bench-only dependency (`pip install img2dataset`, then `pip install -U pandas webdataset`
to undo its version pins); nothing else imports it.

    python bench/render.py [--repeats 7] [--loops 4]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/cv2 load: per-core figures
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations checks PyPI on import otherwise

import argparse  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import imagehash  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from imp_data.images import hash_image, render_image  # noqa: E402

# Real photographs shipped inside scikit-image (the others need a download or are synthetic/binary).
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "stereo_motorcycle", "camera", "moon", "coins", "clock", "grass", "gravel", "brick")
SIZES = ((640, 480), (1024, 768))
INSTALL_HINT = ("img2dataset is not installed; it is a bench-only dependency:\n"
                "    pip install img2dataset && pip install -U pandas webdataset\n"
                "(img2dataset pins pandas<3 and webdataset<0.3; its resizer works with the newer ones this "
                "project installs, so put them back after it)")


# ---- corpus ----------------------------------------------------------------------------------------


def photo(name: str) -> Image.Image:
    """One bundled skimage photo as a PIL RGB image."""
    import skimage.data

    arr = getattr(skimage.data, name)()
    arr = arr[0] if isinstance(arr, tuple) else arr  # stereo_motorcycle -> (left, right, disparity)
    return Image.fromarray(np.asarray(arr, dtype=np.uint8)).convert("RGB")


def reencode(img: Image.Image, size: tuple[int, int], quality: int = 90) -> bytes:
    """Centre-crop to the aspect of `size`, resize to it, encode as a baseline 4:2:0 JPEG."""
    w, h = img.size
    tw, th = size
    if w * th > h * tw:
        cw, ch = h * tw // th, h
    else:
        cw, ch = w, w * th // tw
    box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)
    buf = io.BytesIO()
    img.resize(size, Image.LANCZOS, box=box).save(buf, "JPEG", quality=quality, subsampling=2)
    return buf.getvalue()


def corpus() -> dict[tuple[int, int], list[bytes]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        photos = [photo(n) for n in PHOTOS]
    return {size: [reencode(p, size) for p in photos] for size in SIZES}


# ---- the two sides ---------------------------------------------------------------------------------


def load_resizer():
    try:
        import cv2
        from img2dataset.resizer import Resizer
    except ImportError as err:
        sys.exit(f"{INSTALL_HINT}\n(import failed: {err})")
    cv2.setNumThreads(1)
    return Resizer(image_size=384, resize_mode="border", resize_only_if_bigger=False, encode_quality=95,
                   encode_format="jpg")


def ours(data: bytes) -> None:
    render_image(data, resolution=384, mode="pad", quality=95)


def theirs_factory(resizer) -> Callable[[bytes], None]:
    def theirs(data: bytes) -> None:
        out, width, height, _, _, err = resizer(io.BytesIO(data))
        assert err is None and (width, height) == (384, 384), f"img2dataset Resizer failed: {err}"
    return theirs


def rate(fn: Callable[[bytes], None], images: list[bytes], loops: int) -> float:
    """Images per second of `fn` over `loops` passes of `images`."""
    t0 = time.perf_counter()
    for _ in range(loops):
        for data in images:
            fn(data)
    return loops * len(images) / (time.perf_counter() - t0)


# ---- checks ----------------------------------------------------------------------------------------


def phash_check(images: list[bytes]) -> tuple[list[int], int]:
    """(Hamming distance of render_image's phash to imagehash.phash of the full decode, per image; how
    many images hash_image hashes differently from render_image — must be 0, decontamination compares
    the two)."""
    distances, mismatches = [], 0
    for data in images:
        r = render_image(data)
        assert (r.width, r.height) == (384, 384), (r.width, r.height)
        mismatches += hash_image(data)[1] != r.phash
        full = imagehash.phash(Image.open(io.BytesIO(data)).convert("RGB"))
        distances.append(int(full - imagehash.hex_to_hash(r.phash)))
    return distances, mismatches


# ---- main ------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per side (interleaved); median kept")
    ap.add_argument("--loops", type=int, default=4, help="passes over the corpus per timed run")
    args = ap.parse_args()

    theirs = theirs_factory(load_resizer())
    sets = corpus()
    print(f"corpus: {len(PHOTOS)} skimage photos x {len(SIZES)} sizes; 384x384 output, JPEG q95, one thread "
          f"per side, {args.repeats} interleaved runs of {args.loops} passes, median")
    for size, images in sets.items():
        d, mismatches = phash_check(images)
        print(f"  {size[0]}x{size[1]}: phash vs imagehash.phash(full decode): max {max(d)} bits, "
              f"mean {statistics.mean(d):.2f} {d}; hash_image != render_image: {mismatches}")

    print(f"\n{'source':>10} | {'render_image':>14} | {'img2dataset':>14} | ratio")
    for size, images in sets.items():
        for fn in (ours, theirs):  # warm-up: caches, lazy imports
            rate(fn, images, 1)
        a, b = [], []
        for _ in range(args.repeats):
            a.append(rate(ours, images, args.loops))
            b.append(rate(theirs, images, args.loops))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{f'{size[0]}x{size[1]}':>10} | {ma:9.1f} img/s | {mb:9.1f} img/s | {ma / mb:.2f}x")


if __name__ == "__main__":
    main()
