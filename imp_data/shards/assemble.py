"""Turn a plan into shards, then gather the index, the wids shard list and the mix rejects table.

`write_mix_shards` works on any subset of shard numbers (one Dagster partition = one range), skips
shards that are already complete and verified, and can fan out over processes; every shard depends
only on its plan rows and the render cache, so the bytes are the same serial or parallel.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from imp_data.core.errors import ShardError
from imp_data.core.io import atomic_path, dumps_canonical, write_json_atomic
from imp_data.core.layout import MixDir, shard_name
from imp_data.core.recipe import RenderSpec
from imp_data.core.tables import INDEX_SCHEMA
from imp_data.mix.plan import shard_count
from imp_data.shards.writer import Member, shard_fingerprint, shard_is_complete, write_shard

WIDS_KIND = "wids-shard-index-v1"


def sample_json(row: dict, *, mix: str, location: str, render: RenderSpec) -> bytes:
    """A shard member KEY.json (schemas/shard_record.schema.json).

    `meta` is written as a JSON *string* (the canonical text normalize stored), not an object: its keys
    differ per source and per record, and typed readers (Hugging Face `datasets`, Arrow) infer one struct
    from the first records and silently drop what does not fit. A string column keeps every field for
    every reader; `json.loads(record["meta"])` gives the dict back.
    """
    image = None
    if row.get("image") is not None:
        image = {"path": row["image"], "sha256": row["sha256"], "phash": row["phash"],
                 "orig_width": row["orig_width"], "orig_height": row["orig_height"], "width": row["width"],
                 "height": row["height"], "mode": render.mode, "fill": list(render.fill),
                 "resolution": render.resolution, "resampler": render.resampler,
                 "exif_transpose": render.exif_transpose}
    obj = {"key": row["key"], "id": row["id"], "source": row["source"], "source_id": row["source_id"],
           "conversations": [{"from": t["from"], "value": t["value"]} for t in row["conversations"]],
           "meta": row.get("meta") or "{}", "mix": mix, "location": location,
           "image": image}
    return dumps_canonical(obj).encode("utf-8")


def _index_row(row: dict) -> dict:
    keep = ("position", "id", "source", "source_id", "sha256", "phash", "orig_width", "orig_height", "width",
            "height", "n_turns", "text_chars", "text_words")
    return {k: row.get(k) for k in keep}


@functools.lru_cache(maxsize=4)
def _plan_metadata(path: str, mtime_ns: int, size: int) -> pq.FileMetaData:
    """The plan's parquet footer, parsed once per process (a 1M plan has ~1000 row groups) — keyed by
    mtime and size, so a rewritten plan is read afresh."""
    return pq.read_metadata(path)


def shard_rows(plan_path: Path, shard: int) -> list[dict]:
    """The plan rows of one shard, in position order. The plan is written one row group per shard, so
    this reads only that row group; a plan laid out otherwise falls back to a filtered scan."""
    stat = plan_path.stat()
    pf = pq.ParquetFile(plan_path, metadata=_plan_metadata(str(plan_path), stat.st_mtime_ns, stat.st_size))
    if shard < pf.metadata.num_row_groups:
        table = pf.read_row_group(shard)
        shards = table.column("shard").unique().to_pylist()
        if shards == [shard]:
            return table.to_pylist()
    frame = pl.scan_parquet(plan_path).filter(pl.col("shard") == shard).sort("position").collect()
    return frame.to_dicts()


def planned_shard(plan_path: Path, shard: int, mix: str, locations: dict, render: RenderSpec,
                  inputs: dict) -> tuple[list[dict], list[Member], str]:
    """A shard as the plan now says it: its plan rows, its members (JSON bytes; JPEGs not read yet) and
    its fingerprint."""
    rows = shard_rows(Path(plan_path), shard)
    if not rows:
        raise ShardError(f"shard {shard} of mix {mix!r} is not in the plan {plan_path}")
    members = [Member(row["key"], sample_json(row, mix=mix, location=locations[row["source"]], render=render),
                      None, _index_row(row)) for row in rows]
    return rows, members, shard_fingerprint(members, inputs, [row.get("cache") for row in rows])


def _write_one(args: tuple) -> tuple[int, bool]:
    shard, plan_path, tar_path, part_path, cache_dir, mix, locations, render, inputs, hashes = args
    rows, members, fingerprint = planned_shard(Path(plan_path), shard, mix, locations, render, inputs)
    if shard_is_complete(Path(tar_path), Path(part_path), fingerprint, hashes):
        return shard, False
    for row, member in zip(rows, members):
        if row.get("image") is not None:
            path = os.path.join(cache_dir, row["cache"])  # str paths: pathlib cost 10% of this loop
            try:
                with open(path, "rb") as f:
                    member.jpg_bytes = f.read()
            except OSError as err:
                raise ShardError(f"{path}: rendered image for {row['id']!r} is missing ({err.strerror}) — "
                                 "rerun the render stage") from None
    write_shard(Path(tar_path), Path(part_path), shard, members, fingerprint, hashes)
    # Crash-test hook: slow shard writing down so a test can SIGKILL the build mid-way.
    time.sleep(float(os.environ.get("IMP_DATA_THROTTLE_SHARDS", "0")))
    return shard, True


def _renders_to_write(ctx, mix: str, shards: Iterable[int], locations: dict, render: RenderSpec,
                      inputs: dict) -> list[str]:
    """The render cache keys of every shard that is not complete as the plan now says it."""
    files = ctx.layout.mix_files(mix)
    keys = []
    for shard in shards:
        rows, _, fingerprint = planned_shard(files.plan, shard, mix, locations, render, inputs)
        if not shard_is_complete(files.shard(shard, mix), files.index_part(shard), fingerprint, ctx.hashes):
            keys += [row["cache"] for row in rows if row.get("cache")]
    return keys


def write_mix_shards(ctx, mix: str, shards: Iterable[int] | None = None, *, progress=None) -> dict[str, int]:
    """Write (or verify and skip) the given shards of `mix` (default: all). Returns written/skipped counts.

    A shard is skipped only when its index part records the fingerprint the plan gives it now (its
    members' JSON bytes and JPEG render keys) and the tar still has the recorded size and sha256. Workers
    get only shard numbers and read their own rows, so the parent stays small and the work splits evenly
    across processes. Shard files beyond the plan's shard count (a mix that shrank) are removed.
    """
    from imp_data.core.procs import worker_pool
    from imp_data.stage_inputs import recipe_inputs
    from imp_data.storage import sync as stage_sync

    layout = ctx.layout
    if ctx.remote is not None:
        stage_sync.pull_plan_only(ctx, mix)
    n_shards = shard_count(pl.read_parquet(layout.plan(mix), columns=["shard"]))
    wanted = range(n_shards) if shards is None else sorted(set(shards))
    outside = [s for s in wanted if not 0 <= s < n_shards]
    if outside:
        raise ShardError(f"shard {outside[0]} of mix {mix!r} is not in the plan ({n_shards} shards)")
    render = ctx.recipe.mix_render(mix)
    locations = {s: ctx.recipe.sources[s].location for s in ctx.sources_of(mix)}
    inputs = recipe_inputs(ctx.recipe, "shards", mix)
    if ctx.remote is not None:  # the shards already written, then the renders of those still to write
        stage_sync.pull_shards(ctx, mix, list(wanted))
        stage_sync.pull_renders(ctx, mix, _renders_to_write(ctx, mix, wanted, locations, render, inputs))
    layout.shards_dir(mix).mkdir(parents=True, exist_ok=True)
    layout.index_parts(mix).mkdir(parents=True, exist_ok=True)
    remove_extra_shards(layout, mix, n_shards)
    jobs = [(shard, str(layout.plan(mix)), str(layout.shards_dir(mix) / shard_name(mix, shard)),
             str(layout.index_parts(mix) / f"{shard:06d}.parquet"), str(layout.render_dir(mix) / "cache"),
             mix, locations, render, inputs, ctx.hashes) for shard in wanted]
    counts = {"written": 0, "skipped": 0}

    def tally(results: Iterable[tuple[int, bool]]) -> None:
        for shard, written in results:
            if ctx.remote is not None:
                stage_sync.push_shard(ctx, mix, shard)  # as each one lands: a killed run loses one shard at most
            counts["written" if written else "skipped"] += 1
            if progress is not None:
                progress(1)

    if ctx.workers > 1 and len(jobs) > 1:
        with worker_pool(min(ctx.workers, len(jobs))) as pool:
            tally(pool.map(_write_one, jobs))  # one shard per task: even tails, IPC is negligible
    else:
        tally(map(_write_one, jobs))
    ctx.note("shards", mix, redone=counts["written"], reused=counts["skipped"], unit="shard")
    return counts


def remove_extra_shards(layout, mix: str, n_shards: int) -> None:
    """Delete tars and index parts numbered at or beyond the plan's shard count: left by a bigger build."""
    for tar in layout.shards_dir(mix).glob(f"{mix}-*.tar"):
        number = tar.name[len(mix) + 1:-len(".tar")]
        if number.isdigit() and int(number) >= n_shards:
            tar.unlink()
    for part in layout.index_parts(mix).glob("*.parquet"):
        if part.stem.isdigit() and int(part.stem) >= n_shards:
            part.unlink()


def finalize_index(ctx, mix: str) -> pl.DataFrame:
    """Concatenate the index parts (all shards must be complete) -> index.parquet + index.wids.json."""
    layout = ctx.layout
    plan = pl.read_parquet(layout.plan(mix), columns=["key", "shard"])
    n = shard_count(plan)
    parts = [layout.index_parts(mix) / f"{s:06d}.parquet" for s in range(n)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise ShardError(f"{layout.shards_dir(mix)}: {len(missing)} shard(s) not written yet "
                         f"(e.g. {missing[0]}) — run the shards stage for every partition first")
    index = pl.concat([pl.read_parquet(p) for p in parts], how="vertical") if parts else \
        pl.from_arrow(INDEX_SCHEMA.empty_table())
    if index["key"].to_list() != plan["key"].to_list():
        raise ShardError(f"{layout.index(mix)}: index keys disagree with the plan — rerun the shards stage")
    with atomic_path(layout.index(mix)) as tmp:
        index.write_parquet(tmp)
    shardlist = []
    if index.height:
        per = index.group_by("shard", maintain_order=True).agg(
            pl.len().alias("nsamples"), pl.first("shard_name"), pl.first("shard_size"), pl.first("shard_sha256"))
        shardlist = [{"url": r["shard_name"], "nsamples": r["nsamples"], "filesize": r["shard_size"],
                      "sha256": r["shard_sha256"]} for r in per.sort("shard").to_dicts()]
    write_json_atomic(layout.wids(mix), {"__kind__": WIDS_KIND, "wids_version": 1, "name": mix,
                                         "shardlist": shardlist})
    return index


def gather_rejects(ctx, mix: str) -> pl.DataFrame:
    """Every record of the mix's sources that is not in a shard: normalize rejects, drops, render
    rejects and removals -> rejects.parquet (source, source_id, id, stage, reason, detail, kept_id, distance)."""
    from imp_data.core.tables import DROP_COLUMNS

    layout = ctx.layout
    cols = ["source", "source_id", "id", "stage", "reason", "detail", "kept_id", "distance"]
    frames = []
    for source in ctx.sources_of(mix):
        rej = pl.read_parquet(layout.source_rejects(source))
        frames.append(rej.with_columns(pl.lit(None, pl.String).alias("id"), pl.lit(None, pl.String).alias("kept_id"),
                                       pl.lit(None, pl.Int32).alias("distance")).select(cols))
    from imp_data.mix.fill import activated, unsampled_drops

    frames.append(unsampled_drops(layout, mix).select(cols))
    renders = pl.read_parquet(layout.renders(mix)).filter(pl.col("reason").is_not_null())
    selected = activated(layout, mix, ["id", "source", "source_id"])
    frames.append(renders.join(selected, on="id", how="left").with_columns(
        pl.lit("render").alias("stage"), pl.lit(None, pl.String).alias("kept_id"),
        pl.lit(None, pl.Int32).alias("distance")).select(cols))
    frames.append(pl.read_parquet(layout.removals(mix)).select(cols))
    schema = {k: DROP_COLUMNS[k] for k in cols}
    rejects = pl.concat([f.cast(schema) for f in frames], how="vertical")
    with atomic_path(layout.rejects(mix)) as tmp:
        rejects.write_parquet(tmp)
    return rejects


def read_index(mix_dir: Path) -> pl.DataFrame:
    path = MixDir(Path(mix_dir)).index
    if not path.is_file():
        raise ShardError(f"{path}: no index — build the mix first (imp-data build RECIPE)")
    return pl.read_parquet(path)


