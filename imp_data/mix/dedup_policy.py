"""Dedup and decontamination applied to one mix of a build: gather the inputs, run the policy, write the
contamination report.

The policy itself (which sample goes, which copy stays) is `imp_data.mix.dedup.plan_removals`; this
module lists and hashes the recipe's benchmark image sets and joins the rendered hashes to the selection.
A benchmark the eval job knows, at a folder laid out as LLaVA's `playground/data/eval/<name>`, is read by
the eval job's own split loaders (`imp_data.eval.splits`), and its images are the ones its questions ask
about (MMBench's base64 images inside its TSVs included) — not every file of the image download: POPE
asks about 500 COCO val2014 images, and all of val2014 would also match the ~35K val2014 images COCO 2017
moved into train2017, which LLaVA's mix trains on. Any other location — an image archive or glob of
archive chunks as published (TextVQA's `train_val_images.zip`), or a folder of images without question
files — is listed file by file.
"""

from __future__ import annotations

import glob
import hashlib
import logging
from pathlib import Path

import polars as pl

from imp_data.core.errors import ImageError, ImpDataError
from imp_data.mix.dedup import plan_removals

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")


def asked_images(name: str, root: Path):
    """(image name, bytes) of the images benchmark `name`'s eval splits under `root` ask about, each once, read
    by the eval job's loaders (LLaVA's layout or lmms-lab's parquet copy); nothing when `root` holds neither."""
    from imp_data.eval.splits import SPLITS

    seen: set[str] = set()
    for split in SPLITS.values():
        if split.benchmark != name or split.layout(root) is None:  # LLaVA's question file or lmms-lab's parquet
            continue
        for item in split.load(root):
            try:
                data = item.image_jpeg
            except OSError as err:
                raise ImpDataError(f"{root}: {split.key} question {item.qid} names an image that cannot be read "
                                   f"({err}) — complete the benchmark download") from None
            if data is None:
                continue
            digest = hashlib.sha1(data).hexdigest()  # MMBench's circular copies share one image
            if digest not in seen:
                seen.add(digest)
                where = item.image_path.relative_to(root) if item.image_path else f"{split.key}#{item.qid}"
                yield str(where), data


def list_benchmark_images(location: Path, name: str | None = None, scope: str = "asked"):
    """(image name, bytes) of every image of one benchmark set. For a folder in the eval layout of benchmark
    `name`: the images its questions ask about (`scope` "asked"), or every image of its download, all
    splits (`scope` "all": `imp_data.eval.benchmarks.list_images`). Else every image file of the folder,
    archive or glob of archives."""
    from imp_data.eval.benchmarks import list_images
    from imp_data.eval.splits import BENCHMARKS
    from imp_data.fetch.archives import Archive, is_archive

    if name is not None and location.is_dir():
        listed = False
        eval_images = list_images(name, location) if scope == "all" and name in BENCHMARKS else \
            asked_images(name, location)
        for entry in eval_images:
            listed = True
            yield entry
        if listed:
            return

    paths = ([Path(p) for p in sorted(glob.glob(str(location)))] if any(c in str(location) for c in "*?[")
             else [location])
    if not paths or not any(p.exists() for p in paths):
        raise ImpDataError(f"{location}: benchmark image set not found — fetch it or fix decontaminate.benchmarks")
    for path in paths:
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                    yield str(f.relative_to(path)), f.read_bytes()
        elif is_archive(path):
            archive = Archive(path)
            for member in sorted(archive.names()):
                if member.lower().endswith(IMAGE_SUFFIXES):
                    yield member, archive.read(member)


def benchmark_hashes(name: str, location: Path, scope: str = "asked", exif_transpose: bool = False) -> pl.DataFrame:
    """(benchmark, image_name, sha256, phash) of every decodable image of one benchmark set."""
    from imp_data.images import hash_image

    rows = []
    for image_name, data in list_benchmark_images(location, name, scope):
        try:
            sha, phash = hash_image(data, exif_transpose=exif_transpose)  # the frame the mix renders
        except ImageError as err:  # it cannot contaminate anything, but say so: nothing is skipped silently
            log.warning("%s: benchmark %s image %s not hashed: %s", location, name, image_name, err)
            continue
        rows.append({"benchmark": name, "image_name": image_name, "sha256": sha, "phash": phash})
    return pl.DataFrame(rows, schema={"benchmark": pl.String, "image_name": pl.String, "sha256": pl.String,
                                      "phash": pl.String})


def benchmark_location(ctx, name: str, location: str) -> Path:
    """A benchmark image set on disk: a local path read in place (relative to the data root), or a URL / Hub
    location fetched once into `DATA/raw/benchmarks/<name>/` (completion marker, resumable)."""
    from imp_data.core.io import tree_files
    from imp_data.core.layout import benchmark_unit
    from imp_data.core.locations import local_location, under_root
    from imp_data.fetch.locations import resolve_location

    local = local_location(location, ctx.data_root)
    if local is not None:
        if ctx.remote is not None and under_root(location):
            ctx.remote.pull_tree(location)  # a folder placed in the bucket
        return local
    unit, cache_dir = benchmark_unit(name), ctx.layout.root / "raw" / "benchmarks" / name
    if ctx.remote is not None:
        ctx.remote.pull(unit)
    path = resolve_location(location, ctx.data_root, files=None, cache_dir=cache_dir, progress=ctx.progress)
    if ctx.remote is not None:
        ctx.remote.push(unit, tree_files(cache_dir))
    return path


def _memo_hashes(ctx, name: str, location: str, scope: str, exif_transpose: bool) -> pl.DataFrame:
    """A benchmark set's hashes, computed once per build (the fill loop runs the policy more than once)."""
    key = ("benchmark_hashes", name, location, scope, exif_transpose)
    if key not in ctx.memo:
        ctx.memo[key] = benchmark_hashes(name, benchmark_location(ctx, name, location), scope, exif_transpose)
    return ctx.memo[key]


def removals_for_mix(ctx, mix: str, selected: pl.DataFrame, renders: pl.DataFrame) -> pl.DataFrame:
    """Contamination (reported to contamination.parquet, dropped per policy), then dedup of the rest."""
    from imp_data.core.io import atomic_path

    spec = ctx.recipe.mixes[mix]
    frame = (renders.filter(pl.col("reason").is_null()).select("id", "sha256", "phash")
             .join(selected.select("id", "source", "source_id"), on="id"))
    bench = None
    if spec.decontaminate.benchmarks:
        exif = ctx.recipe.mix_render(mix).exif_transpose
        bench = pl.concat([_memo_hashes(ctx, name, loc, spec.decontaminate.scope, exif)
                           for name, loc in sorted(spec.decontaminate.benchmarks.items())])
    removed, contamination = plan_removals(frame, bench, spec.dedup, spec.decontaminate)
    with atomic_path(ctx.layout.contamination(mix)) as tmp:
        contamination.write_parquet(tmp)
    return removed
