"""Render every selected image once: resize-then-pad JPEG into a cache, plus its hashes.

Dedup and decontamination need each image's sha256 and phash *before* the plan is made, and the shards
need the rendered JPEG *after*. Rendering once into a cache (`mixes/M/render/`) serves both with a single
decode per image. Work is cut into fixed chunks of the selection; a chunk's result table is written last,
so a crashed run resumes at the first missing chunk. Chunks run in parallel across processes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from imp_data.errors import ImageError
from imp_data.io import atomic_path, dumps_canonical
from imp_data.recipe import RenderSpec

CHUNK = 1024

RESULT_SCHEMA = {
    "id": pl.String, "sha256": pl.String, "phash": pl.String, "orig_width": pl.Int32, "orig_height": pl.Int32,
    "width": pl.Int32, "height": pl.Int32, "cache": pl.String, "reason": pl.String, "detail": pl.String,
}


def cache_relpath(sample_id: str) -> str:
    """Cache file for a sample: hashed, so untrusted ids never become paths."""
    digest = hashlib.sha1(sample_id.encode()).hexdigest()
    return f"{digest[:2]}/{digest}.jpg"


@dataclass(frozen=True)
class RenderJob:
    """One chunk of one source: picklable, so it can run in a worker process."""

    source: str
    chunk: int
    ids: tuple[str, ...]
    images: tuple[str, ...]
    cache_dir: str
    out_path: str
    render: dict
    store_factory: Callable  # () -> object with .read(path) -> bytes


def _run_job(job: RenderJob) -> int:
    from imp_data.images import render_image  # imported in the worker

    store = job.store_factory()
    spec = RenderSpec.model_validate(job.render)
    cache = Path(job.cache_dir)
    rows = []
    for sample_id, image in zip(job.ids, job.images):
        row = dict.fromkeys(RESULT_SCHEMA)
        row["id"] = sample_id
        try:
            data = store.read(image)
            out = render_image(data, resolution=spec.resolution, mode=spec.mode, fill=tuple(spec.fill),
                               quality=spec.quality, resampler=spec.resampler)
        except ImageError as err:
            row["reason"], row["detail"] = err.reason, f"{image}: {err.detail}"
            rows.append(row)
            continue
        rel = cache_relpath(sample_id)
        path = cache / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(out.jpeg)
        row.update(sha256=out.sha256, phash=out.phash, orig_width=out.orig_width, orig_height=out.orig_height,
                   width=out.width, height=out.height, cache=rel)
        rows.append(row)
    with atomic_path(Path(job.out_path)) as tmp:
        pl.DataFrame(rows, schema=RESULT_SCHEMA, orient="row").write_parquet(tmp)
    return len(rows)


def _one_thread_worker() -> None:
    """Pool initializer: the pool already uses every core, so torch's resize must not add threads of its own."""
    from imp_data.images import _torch

    torch = _torch()
    if torch is not None:
        torch.set_num_threads(1)


def _chunk_done(path: Path, ids: tuple[str, ...]) -> bool:
    if not path.is_file():
        return False
    try:
        return tuple(pl.read_parquet(path, columns=["id"])["id"].to_list()) == ids
    except Exception:
        return False


def render_selection(
    selected: pl.DataFrame,
    *,
    source: str,
    store_factory: Callable,
    render: RenderSpec,
    render_dir: Path,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> pl.DataFrame:
    """Render the images of `selected` (columns id, image) for one source; return the result table.

    Rows without an image are skipped (text-only). The result has one row per image sample: hashes and
    cache path, or `reason`/`detail` when the image could not be read or decoded (a render reject).
    """
    settings = dumps_canonical(render.model_dump(mode="json"))
    tag = hashlib.sha1(settings.encode()).hexdigest()[:12]  # new settings never reuse old renders
    src_dir = render_dir / source / tag
    with_image = selected.filter(pl.col("image").is_not_null()).select("id", "image")
    ids, images = with_image["id"].to_list(), with_image["image"].to_list()
    jobs = []
    for n, start in enumerate(range(0, len(ids), CHUNK)):
        out = src_dir / f"chunk-{n:06d}.parquet"
        chunk_ids = tuple(ids[start : start + CHUNK])
        if _chunk_done(out, chunk_ids):
            if progress:
                progress(len(chunk_ids))
            continue
        jobs.append(RenderJob(source, n, chunk_ids, tuple(images[start : start + CHUNK]), str(render_dir / "cache"),
                              str(out), render.model_dump(mode="json"), store_factory))
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=_one_thread_worker) as pool:
            for count in pool.map(_run_job, jobs):
                if progress:
                    progress(count)
    else:
        for job in jobs:
            count = _run_job(job)
            if progress:
                progress(count)
    parts = sorted(src_dir.glob("chunk-*.parquet")) if ids else []
    parts = [p for p in parts if int(p.stem.split("-")[1]) * CHUNK < len(ids)]
    if not parts:
        return pl.DataFrame(schema=RESULT_SCHEMA)
    return pl.concat([pl.read_parquet(p) for p in parts], how="vertical")
