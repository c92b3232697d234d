"""Render every selected image once: resize-then-pad JPEG into a content-addressed cache, plus its hashes.

Dedup and decontamination need each image's sha256 and phash *before* the plan is made, and the shards
need the rendered JPEG *after*. Rendering once into a cache (`mixes/M/render/cache/`) serves both with a
single decode per image.

The cache is keyed by content, never by sample id: a render's key is a hash of the source image's
identity (the file's sha256, read through the stat-keyed `FileHashes` cache, or a zip member's CRC-32 and
size), the render settings and the render code version. So a new resolution re-renders everything, an
edited image re-renders that image alone, a text edit re-renders nothing, and two samples showing the same
image are rendered once. Each render leaves `<key>.jpg` and then `<key>.json` (its hashes, or why it
failed): a crashed run resumes at the first image without a `.json`. Keys no longer selected are pruned
when the stage ends, so the cache holds exactly what the mix uses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from imp_data.core.errors import ImageError
from imp_data.core.fingerprint import CODE_VERSIONS, FileHashes, digest
from imp_data.core.io import atomic_path, dumps_canonical
from imp_data.core.recipe import RenderSpec
from imp_data.core.tables import RENDER_COLUMNS

CHUNK = 1024

_RESULT_FIELDS = ("sha256", "phash", "orig_width", "orig_height", "width", "height", "reason", "detail")


IMAGE_LIMITS = ("max_image_pixels", "max_member_bytes", "max_compression_ratio")


def render_key(identity: str, render: dict, limits: dict | None = None) -> str:
    """The cache key of one render: what the bytes are, how they are rendered (settings and the image caps
    that decide a reject), by which code version."""
    caps = {k: v for k, v in (limits or {}).items() if k in IMAGE_LIMITS}
    return digest({"image": identity, "render": render, "limits": caps, "code": CODE_VERSIONS["render"]})


def cache_relpath(key: str, suffix: str = ".jpg") -> str:
    """`ab/abcdef….jpg`: the cache file of a render key (hex, so untrusted ids never become paths)."""
    return f"{key[:2]}/{key}{suffix}"


@dataclass(frozen=True)
class RenderJob:
    """One chunk of one source: picklable, so it can run in a worker process."""

    ids: tuple[str, ...]
    images: tuple[str, ...]
    cache_dir: str
    render: dict
    store_factory: Callable  # () -> ImageStore
    hashes: FileHashes
    previous: dict = field(default_factory=dict)  # id -> (render_key, result) of the last renders.parquet
    trust_previous: bool = False  # remote data root: the JPEGs of previous renders are in the bucket
    limits: dict | None = None  # the recipe's caps (imp_data.core.limits), applied in the worker


@dataclass
class ChunkResult:
    rows: list[dict]
    rendered: int = 0
    reused: int = 0


def _identity(store, image: str, hashes: FileHashes) -> str:
    try:
        found = store.identity(image, hashes.sha256)
    except ImageError as err:
        return f"error:{err.reason}:{image}"
    except OSError as err:
        return f"unreadable:{err.strerror}:{image}"
    return found if found is not None else f"missing:{image}"


def _read_result(cache: Path, key: str) -> dict | None:
    """The stored outcome of a render, if it finished (its JPEG present when it succeeded)."""
    try:
        with open(cache / cache_relpath(key, ".json"), encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, ValueError):
        return None
    if result.get("reason") is None and not (cache / cache_relpath(key)).is_file():
        return None
    return result


def _render_one(store, image: str, key: str, spec: RenderSpec, cache: Path) -> dict:
    from imp_data.core.errors import ImpDataError
    from imp_data.images import render_image  # imported in the worker

    failed = "image_unreadable"
    try:
        data = store.read(image)
        failed = "image_undecodable"
        out = render_image(data, resolution=spec.resolution, mode=spec.mode, fill=tuple(spec.fill),
                           quality=spec.quality, resampler=spec.resampler, exif_transpose=spec.exif_transpose)
    except ImageError as err:
        result = {"reason": err.reason, "detail": err.detail}
    except (ImpDataError, MemoryError):
        raise  # structural (an archive that cannot be opened) or the machine's: the build stops, one line
    except Exception as err:  # noqa: BLE001 - anything else one image's bytes set off costs that sample only
        result = {"reason": failed, "detail": " ".join(f"{type(err).__name__}: {err}".split())}
    else:
        with atomic_path(cache / cache_relpath(key), fsync=False) as tmp:  # cache: rename-atomic, not fsynced
            tmp.write_bytes(out.jpeg)
        result = {"sha256": out.sha256, "phash": out.phash, "orig_width": out.orig_width,
                  "orig_height": out.orig_height, "width": out.width, "height": out.height}
    with atomic_path(cache / cache_relpath(key, ".json"), fsync=False) as tmp:  # written last: the render is done
        tmp.write_text(dumps_canonical(result), encoding="utf-8")
    return result


def _run_job(job: RenderJob) -> ChunkResult:
    from imp_data.core.limits import applied

    with applied(job.limits):
        return _run_chunk(job)


_STORES: dict = {"pid": None, "open": {}}  # this process's image stores, reused across its jobs


def _open_store(factory: Callable):
    """The image store for `factory`, kept open across this process's jobs: opening one re-reads every
    archive's member directory (COCO's zip has 118K names), which per 1024-image job made rendering a
    large source quadratic. Keyed by the roots and each root file's (size, mtime, inode), so an archive
    replaced in between is opened afresh; never shared across a fork (the pid is checked)."""
    import functools
    import glob

    if _STORES["pid"] != os.getpid():
        _STORES.update(pid=os.getpid(), open={})
    if not isinstance(factory, functools.partial) or not factory.args:
        return factory(), True
    seen = []
    for root in factory.args[0]:
        location = root[1]
        for path in sorted(glob.glob(location)) if any(c in location for c in "*?[") else [location]:
            try:
                st = os.stat(path)
                seen.append((path, st.st_size, st.st_mtime_ns, st.st_ino))
            except OSError:
                seen.append((path, None))
    key = (factory.func.__qualname__, factory.args, tuple(seen))
    stores = _STORES["open"]
    if key not in stores:
        if len(stores) >= 8:  # a few sources at a time; the oldest goes
            stores.pop(next(iter(stores))).close()
        stores[key] = factory()
    return stores[key], False


def _run_chunk(job: RenderJob) -> ChunkResult:
    store, own = _open_store(job.store_factory)
    spec = RenderSpec.model_validate(job.render)
    cache = Path(job.cache_dir)
    out = ChunkResult(rows=[])
    for sample_id, image in zip(job.ids, job.images):
        key = render_key(_identity(store, image, job.hashes), job.render, job.limits)
        result = _read_result(cache, key)
        prev = job.previous.get(sample_id)
        if result is None and prev is not None and prev[0] == key and job.trust_previous:
            result = prev[1]
        if result is None:
            result = _render_one(store, image, key, spec, cache)
            out.rendered += 1
        else:
            out.reused += 1
        row = {"id": sample_id, "render_key": key, **{k: result.get(k) for k in _RESULT_FIELDS}}
        if row["reason"] is not None:
            row["detail"] = f"{image}: {row['detail']}"
        else:
            row["cache"] = cache_relpath(key)
        out.rows.append(row)
    if own:
        store.close()
    return out


def _one_thread_worker() -> None:
    """Pool initializer: the pool already uses every core, so torch's resize must not add threads of its own."""
    from imp_data.images import _torch

    torch = _torch()
    if torch is not None:
        torch.set_num_threads(1)


def _previous(renders_path: Path, ids: list[str]) -> dict:
    """id -> (render_key, result) from the last renders table (what a fresh machine reuses)."""
    if not renders_path.is_file():
        return {}
    try:
        frame = pl.read_parquet(renders_path)
    except Exception:  # an unreadable old table only costs re-rendering
        return {}
    if "render_key" not in frame.columns:
        return {}
    frame = frame.filter(pl.col("id").is_in(ids))
    return {r["id"]: (r["render_key"], {k: r[k] for k in _RESULT_FIELDS}) for r in frame.to_dicts()}


def render_selection(
    selected: pl.DataFrame,
    *,
    store_factory: Callable,
    render: RenderSpec,
    render_dir: Path,
    hashes: FileHashes,
    previous: Path | None = None,
    trust_previous: bool = False,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    limits: dict | None = None,
) -> tuple[pl.DataFrame, int, int]:
    """Render the images of `selected` (columns id, image) for one source; return (result table,
    images rendered, images reused).

    Rows without an image are skipped (text-only). The result has one row per image sample: hashes and
    cache path, or `reason`/`detail` when the image could not be read or decoded (a render reject).
    """
    from imp_data.core.procs import worker_pool

    with_image = selected.filter(pl.col("image").is_not_null()).select("id", "image")
    ids, images = with_image["id"].to_list(), with_image["image"].to_list()
    prev = _previous(previous, ids) if previous is not None else {}
    settings = render.model_dump(mode="json")
    jobs = [RenderJob(tuple(ids[s:s + CHUNK]), tuple(images[s:s + CHUNK]), str(render_dir / "cache"), settings,
                      store_factory, hashes, {i: prev[i] for i in ids[s:s + CHUNK] if i in prev}, trust_previous,
                      limits)
            for s in range(0, len(ids), CHUNK)]
    results: list[ChunkResult] = []
    if workers > 1 and len(jobs) > 1:
        with worker_pool(workers, initializer=_one_thread_worker) as pool:
            for res in pool.map(_run_job, jobs):
                results.append(res)
                if progress:
                    progress(len(res.rows))
    else:
        for job in jobs:
            results.append(_run_job(job))
            if progress:
                progress(len(results[-1].rows))
    rows = [row for res in results for row in res.rows]
    table = pl.DataFrame(rows, schema=RENDER_COLUMNS, orient="row") if rows else pl.DataFrame(schema=RENDER_COLUMNS)
    return table, sum(r.rendered for r in results), sum(r.reused for r in results)


def prune_cache(render_dir: Path, keep: set[str]) -> int:
    """Delete cached renders whose key is not in `keep` (settings or images that are no longer used)."""
    cache = render_dir / "cache"
    removed = 0
    if not cache.is_dir():
        return 0
    for sub in os.scandir(cache):
        if not sub.is_dir():
            continue
        for entry in os.scandir(sub.path):
            stem = entry.name.split(".", 1)[0]
            if stem not in keep and not entry.name.startswith("."):
                os.unlink(entry.path)
                removed += entry.name.endswith(".json")
    return removed
