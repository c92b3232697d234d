"""The build: every stage as a plain function over the data root, shared by the CLI and Dagster.

Each stage reads the files the previous one wrote and writes its own atomically, so any stage can be
rerun alone (a Dagster asset materialization) and a crashed build resumes. `build()` chains them for
the CLI. Paths follow docs/design.md §4; `Layout` (imp_data.core.layout) is the one place that spells them. With a
data root in object storage, `@synced` pulls each stage's inputs and pushes its outputs.

Every unit of work is fingerprinted (imp_data.core.fingerprint) from the recipe fields its stage reads
(imp_data.stage_inputs), its code version and the content of what it reads; a unit whose stamp still
holds is reused, so a rebuild costs what changed. README "How rebuilds work" tells the rules.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from imp_data.core.context import BuildContext, read_frame
from imp_data.core.errors import ImpDataError
from imp_data.core.fingerprint import stage_fingerprint
from imp_data.core.layout import mix_unit, normalized_unit
from imp_data.core.limits import applied
from imp_data.core.locations import local_location
from imp_data.core.stages import reached, until_stage
from imp_data.core.tables import DROP_COLUMNS
from imp_data.identities import benchmark_identities
from imp_data.stage_inputs import recipe_inputs
from imp_data.storage.sync import synced

# ---------------------------------------------------------------------------------------------------------
# source stages


@synced("fetch")
def fetch_source(ctx: BuildContext, source: str) -> Path:
    """Make the source's annotation files available locally; return the directory the adapter reads."""
    from imp_data.sources.registry import get_adapter

    spec = ctx.source(source)
    files = spec.files or get_adapter(spec.adapter).default_files
    local = local_location(spec.location, ctx.data_root)
    if local is not None:
        from imp_data.sources.base import resolve_files

        resolve_files(local, files)  # one clear error listing every missing file
        root = local
    else:
        from imp_data.fetch.locations import resolve_location

        root = resolve_location(spec.location, ctx.data_root, files=files, cache_dir=ctx.layout.raw(source))
    return root


@synced("normalize")
def normalize_source(ctx: BuildContext, source: str, root: Path):
    """Adapter records (read from `root`, what `fetch_source` returned) -> normalized/<source>.parquet +
    rejects/<source>.parquet; returns SourceCounts."""
    from imp_data.core.progress import progress_bar
    from imp_data.normalize import normalize_records, read_counts
    from imp_data.sources.base import resolve_files
    from imp_data.sources.registry import get_adapter

    spec = ctx.source(source)
    adapter = get_adapter(spec.adapter)
    paths = resolve_files(root, spec.files or adapter.default_files)
    files = [str(p.relative_to(root)) for p in paths]
    unit, lay = normalized_unit(source), ctx.layout
    outputs = [lay.normalized(source), lay.source_counts(source), lay.source_rejects(source)]
    fp = stage_fingerprint("normalize", recipe=recipe_inputs(ctx.recipe, "normalize", source),
                           files={f: ctx.hashes.sha256(p) for f, p in zip(files, paths)})
    if ctx.fresh(unit, fp):
        ctx.note("normalize", source, redone=0, reused=1, unit="table")
        return read_counts(lay.normalized(source))
    options = adapter.parse_options(spec.options)
    with applied(ctx.recipe.limits), progress_bar(desc=f"normalize {source}", unit="rec", enabled=ctx.progress) as bar:
        counts = normalize_records(source, adapter.read(root, files, options), lay.normalized(source),
                                   lay.source_rejects(source), progress=bar)
    ctx.stamp(unit, fp, outputs)
    ctx.note("normalize", source, redone=1, reused=0, unit="table")
    return counts


@synced("download")
def download_source_images(ctx: BuildContext, source: str) -> dict | None:
    """For URL-only sources (`download_images: true`): fetch every image URL of the normalized samples
    into raw/<source>/; returns the download summary (success rate by reason), None when not configured."""
    if not ctx.source(source).download_images:
        return None
    from imp_data.fetch.http import DownloadConfig, download_images, summarize_downloads

    urls = (pl.scan_parquet(ctx.layout.normalized(source)).select("image")
            .filter(pl.col("image").str.starts_with("http")).collect()["image"].to_list())
    download_images(urls, ctx.layout.raw(source), config=ctx.download or DownloadConfig(), progress=ctx.progress)
    return summarize_downloads(ctx.layout.raw(source) / "downloads.parquet")


# ---------------------------------------------------------------------------------------------------------
# mix stages



@synced("select")
def select_mix(ctx: BuildContext, mix: str) -> dict:
    """Drop rules + take-N for every source of the mix -> selected.parquet and drops.parquet."""
    from imp_data.core.io import atomic_path
    from imp_data.mix.select import select_columns, select_source

    spec = ctx.recipe.mixes[mix]
    unit = mix_unit(mix, "selection")
    outputs = [ctx.layout.selected(mix), ctx.layout.drops(mix), ctx.layout.reserve(mix)]
    fp = stage_fingerprint("select", recipe=recipe_inputs(ctx.recipe, "select", mix),
                           normalized={s: ctx.sha(ctx.layout.normalized(s)) for s in spec.sources})
    if ctx.fresh(unit, fp):
        ctx.note("select", mix, redone=0, reused=1, unit="table")
        return ctx.stamp_of(unit)["summary"]
    taken, drops, reserve, summary = [], [], [], {}
    for source, share in spec.sources.items():
        path = ctx.layout.normalized(source)
        if not path.is_file():
            raise ImpDataError(f"{path}: no normalized samples for {source!r} yet — run the normalize stage first")
        frame = pl.read_parquet(path, columns=select_columns(share))  # never the texts: they stay on disk
        sel = select_source(frame, source, share, ctx.recipe.seed)
        taken.append(sel.taken)
        if sel.reserve is not None:
            reserve.append(sel.reserve)
        for rule, rows in sel.dropped.items():
            stage = "select"
            drops.append(rows.with_columns(pl.lit(stage).alias("stage"), pl.lit(rule).alias("reason"),
                                           pl.lit(f"dropped by rule {rule!r}").alias("detail"),
                                           pl.lit(None, pl.String).alias("kept_id"),
                                           pl.lit(None, pl.Int32).alias("distance")))
        summary[source] = {"target": share.take, "available": sel.available, "dropped": sel.dropped_counts,
                           "selected": sel.taken.height}
    selected = pl.concat(taken, how="vertical") if taken else pl.DataFrame()
    dropped = (pl.concat(drops, how="vertical").select(list(DROP_COLUMNS)) if drops
               else pl.DataFrame(schema=DROP_COLUMNS))
    reserved = pl.concat(reserve, how="vertical") if reserve else selected.clear()
    for path, frame in ((ctx.layout.selected(mix), selected), (ctx.layout.drops(mix), dropped),
                        (ctx.layout.reserve(mix), reserved)):
        with atomic_path(path) as tmp:
            frame.write_parquet(tmp)
    ctx.stamp(unit, fp, outputs, summary=summary)
    ctx.note("select", mix, redone=1, reused=0, unit="table")
    return summary


@synced("render")
def render_mix(ctx: BuildContext, mix: str) -> pl.DataFrame:
    """Render the selected images into the mix's content-addressed render cache, replacing samples lost to
    render rejects or dedup/decontamination from the seeded reserve (imp_data.mix.fill) -> renders.parquet
    and fill.parquet. Images whose render key is already cached are reused, not decoded."""
    from imp_data.core.io import atomic_path
    from imp_data.core.progress import progress_bar
    from imp_data.mix.fill import render_and_fill, render_rows

    lay = ctx.layout
    selected = read_frame(lay.selected(mix), "selection", "run the select stage first")
    reserve = pl.read_parquet(lay.reserve(mix)) if lay.reserve(mix).is_file() else selected.clear()
    unit, outputs = mix_unit(mix, "renders"), [lay.renders(mix), lay.fill(mix)]

    def fingerprint(renders: pl.DataFrame) -> str:  # the fill's decisions are a function of all of these
        return stage_fingerprint("render", recipe=recipe_inputs(ctx.recipe, "render", mix),
                                 removal=recipe_inputs(ctx.recipe, "dedup", mix),
                                 benchmarks=benchmark_identities(ctx, mix),
                                 tables=[ctx.sha(lay.selected(mix)), ctx.sha(lay.reserve(mix))],
                                 renders=renders.select("id", "render_key").rows())

    n_images = selected.filter(pl.col("image").is_not_null()).height
    first = 0  # images rendered while checking the last outcome (counted once in the report)
    with progress_bar(total=n_images, desc=f"render {mix}", unit="img", enabled=ctx.progress) as bar:
        if lay.fill(mix).is_file() and lay.renders(mix).is_file():  # the last outcome, if nothing changed
            last = pl.concat([selected, pl.read_parquet(lay.fill(mix)).filter(
                pl.col("id").is_in(reserve["id"].implode()))], how="vertical")
            parts, first, reused = render_rows(ctx, mix, last, bar)
            if parts and ctx.fresh(unit, fingerprint(pl.concat(parts, how="vertical"))):
                ctx.note("render", mix, redone=first, reused=reused, unit="img")
                return pl.read_parquet(lay.renders(mix))
        renders, fill, rendered, reused = render_and_fill(ctx, mix, selected, reserve, bar)
    ctx.note("render", mix, redone=first + rendered, reused=max(0, renders.height - first - rendered), unit="img")
    fp = fingerprint(renders)
    if not ctx.fresh(unit, fp):
        for path, frame in ((lay.renders(mix), renders), (lay.fill(mix), fill)):
            with atomic_path(path) as tmp:
                frame.write_parquet(tmp)
        ctx.stamp(unit, fp, outputs)
    prune_renders(ctx, mix, renders)
    return renders


def prune_renders(ctx: BuildContext, mix: str, renders: pl.DataFrame | None = None) -> int:
    """Drop cached renders that neither the renders table nor the current plan uses (the plan's are kept
    until it is remade, so shards written in between, e.g. by a Dagster step, still find their JPEGs)."""
    from imp_data.mix.render import prune_cache

    lay = ctx.layout
    if renders is None:
        renders = pl.read_parquet(lay.renders(mix), columns=["render_key"])
    keep = set(renders["render_key"].to_list())
    if lay.plan(mix).is_file():
        keep |= {Path(c).stem for c in pl.read_parquet(lay.plan(mix), columns=["cache"])["cache"].drop_nulls()}
    return prune_cache(lay.render_dir(mix), keep)


@synced("dedup")
def dedup_mix(ctx: BuildContext, mix: str) -> pl.DataFrame:
    """Dedup + decontamination over rendered hashes -> removals.parquet (empty when both are off)."""
    from imp_data.core.io import atomic_path
    from imp_data.mix.fill import activated
    from imp_data.mix.removals import find_removals

    lay = ctx.layout
    read_frame(lay.selected(mix), "selection", "run the select stage first")
    renders = read_frame(lay.renders(mix), "renders", "run the render stage first")
    unit, outputs = mix_unit(mix, "removals"), [lay.removals(mix), lay.contamination(mix)]
    fp = stage_fingerprint("dedup", recipe=recipe_inputs(ctx.recipe, "dedup", mix), selected=ctx.sha(lay.selected(mix)),
                           fill=ctx.sha(lay.fill(mix)), renders=ctx.sha(lay.renders(mix)),
                           benchmarks=benchmark_identities(ctx, mix))
    if ctx.fresh(unit, fp):
        ctx.note("dedup", mix, redone=0, reused=1, unit="table")
        return pl.read_parquet(lay.removals(mix))
    removals = find_removals(ctx, mix, activated(lay, mix), renders)
    with atomic_path(lay.removals(mix)) as tmp:
        removals.write_parquet(tmp)
    ctx.stamp(unit, fp, outputs)
    ctx.note("dedup", mix, redone=1, reused=0, unit="table")
    return removals


@synced("plan")
def plan_stage(ctx: BuildContext, mix: str) -> pl.DataFrame:
    """Kept samples (selected + fill - render rejects - removals) in seeded shuffled order -> plan.parquet.

    The order is computed on ids alone; the sample texts are then joined and written by polars'
    streaming engine, one Parquet row group per shard (so a shard writer reads just its rows) — the
    1M-sample plan never has to sit in memory whole. Returns the small order table.
    """
    from imp_data.core.io import atomic_path
    from imp_data.core.tables import PLAN_COLUMNS
    from imp_data.mix.fill import activated
    from imp_data.mix.plan import plan_mix

    lay = ctx.layout
    for path, what in ((lay.selected(mix), "selection"), (lay.renders(mix), "renders"),
                       (lay.removals(mix), "removals")):
        if not path.is_file():
            raise ImpDataError(f"{path}: no {what} yet — run the earlier stages of mix {mix!r} first")
    unit = mix_unit(mix, "plan")
    fp = stage_fingerprint("plan", recipe=recipe_inputs(ctx.recipe, "plan", mix),
                           tables=[ctx.sha(p) for p in (lay.selected(mix), lay.fill(mix), lay.renders(mix),
                                                        lay.removals(mix))],
                           normalized={s: ctx.sha(lay.normalized(s)) for s in ctx.sources_of(mix)})
    if ctx.fresh(unit, fp):
        ctx.note("plan", mix, redone=0, reused=1, unit="table")
        return pl.read_parquet(lay.plan(mix), columns=["id", "position", "key", "shard"])
    renders = pl.scan_parquet(ctx.layout.renders(mix))
    dropped = pl.concat([renders.filter(pl.col("reason").is_not_null()).select("id"),
                         pl.scan_parquet(ctx.layout.removals(mix)).select("id")]).collect()["id"]
    samples = activated(lay, mix)
    kept = samples.select("id").filter(~pl.col("id").is_in(dropped.implode()))
    shard_size = ctx.recipe.mix_shard_size(mix)
    order = plan_mix(kept, mix=mix, seed=ctx.recipe.seed, shard_size=shard_size)
    texts = (pl.scan_parquet([ctx.layout.normalized(s) for s in ctx.sources_of(mix)])
             .select("id", "conversations", "meta"))
    plan = (order.lazy()
            .join(samples.lazy(), on="id", how="left")
            .join(renders.filter(pl.col("reason").is_null()).drop("reason", "detail"), on="id", how="left")
            .join(texts, on="id", how="left")
            .sort("position")
            .select(PLAN_COLUMNS))
    with atomic_path(ctx.layout.plan(mix)) as tmp:
        plan.sink_parquet(tmp, row_group_size=shard_size, statistics=False, engine="streaming")
    ctx.stamp(unit, fp, [lay.plan(mix)])
    ctx.note("plan", mix, redone=1, reused=0, unit="table")
    return order


@synced("finalize")
def finalize_mix(ctx: BuildContext, mix: str) -> dict:
    """Index, wids list, rejects table and stats for a mix whose shards are all written."""
    from imp_data.audit.stats import load_stats, write_stats
    from imp_data.mix.plan import shard_count
    from imp_data.shards.assemble import finalize_index, gather_rejects

    lay = ctx.layout
    n_shards = shard_count(pl.read_parquet(lay.plan(mix), columns=["shard"]))
    tables = [lay.plan(mix), lay.selected(mix), lay.drops(mix), lay.fill(mix), lay.renders(mix), lay.removals(mix),
              lay.contamination(mix)]
    for source in ctx.sources_of(mix):
        tables += [lay.source_counts(source), lay.source_rejects(source), lay.raw(source) / "downloads.parquet"]
    tables += [lay.index_parts(mix) / f"{s:06d}.parquet" for s in range(n_shards)]
    unit, outputs = mix_unit(mix, "index"), [lay.index(mix), lay.wids(mix), lay.rejects(mix), lay.stats(mix)]
    fp = stage_fingerprint("finalize", recipe=recipe_inputs(ctx.recipe, "finalize", mix),
                           tables={p.relative_to(ctx.data_root).as_posix(): ctx.sha(p) for p in tables})
    if ctx.fresh(unit, fp):
        ctx.note("finalize", mix, redone=0, reused=1, unit="table")
        return load_stats(lay.mix(mix))
    finalize_index(ctx, mix)
    gather_rejects(ctx, mix)
    stats = write_stats(ctx, mix)
    prune_renders(ctx, mix)
    ctx.stamp(unit, fp, outputs)
    ctx.note("finalize", mix, redone=1, reused=0, unit="table")
    return stats


@synced("report")
def report_mix(ctx: BuildContext, mix: str) -> Path:
    """report.md, charts and the dataset card (README.md) from stats.json."""
    from imp_data.audit.report import write_report
    from imp_data.audit.stats import load_stats

    lay = ctx.layout
    unit = mix_unit(mix, "report")
    fp = stage_fingerprint("report", stats=ctx.sha(lay.stats(mix)))
    if ctx.fresh(unit, fp):
        ctx.note("report", mix, redone=0, reused=1, unit="table")
        return lay.report(mix)
    path = write_report(load_stats(lay.mix(mix)), lay.mix(mix))
    files = lay.mix_files(mix)
    ctx.stamp(unit, fp, [path, files.card, *files.chart_files()])
    ctx.note("report", mix, redone=1, reused=0, unit="table")
    return path


# ---------------------------------------------------------------------------------------------------------
# the whole flow (CLI)


def build_mix(ctx: BuildContext, mix: str, until: str | None = None) -> dict | None:
    """select -> render -> dedup -> plan -> shards -> finalize -> report for one mix (stopping after `until`)."""
    from imp_data.core.progress import progress_bar
    from imp_data.shards.assemble import write_mix_shards

    select_mix(ctx, mix)
    if reached(until, "select"):
        return None
    render_mix(ctx, mix)
    if reached(until, "render"):
        return None
    dedup_mix(ctx, mix)
    if reached(until, "dedup"):
        return None
    plan = plan_stage(ctx, mix)
    if reached(until, "plan"):
        return None
    from imp_data.mix.plan import shard_count

    with progress_bar(total=shard_count(plan), desc=f"shards {mix}", unit="shard", enabled=ctx.progress) as bar:
        write_mix_shards(ctx, mix, progress=bar.update)
    if reached(until, "shards"):
        return None
    stats = finalize_mix(ctx, mix)
    if reached(until, "finalize"):
        return stats
    report_mix(ctx, mix)
    return stats


def build(ctx: BuildContext, *, sources: list[str] | None = None, until: str | None = None,
          mixes: list[str] | None = None) -> dict:
    """Run the build, stopping after stage `until` (imp_data.core.stages) if given; returns
    {"counts": {source: SourceCounts}, "mixes": {mix: stats}, "rows": [...]}."""
    try:
        until = until_stage(until)
    except ValueError as err:
        raise ImpDataError(str(err)) from None
    wanted = sources or list(dict.fromkeys(s for m in ctx.recipe.mixes.values() for s in m.sources))
    for name in wanted:
        ctx.source(name)
    counts = {}
    for name in wanted:
        root = fetch_source(ctx, name)
        if reached(until, "fetch"):
            continue
        counts[name] = normalize_source(ctx, name, root)
        if reached(until, "normalize"):
            continue
        download_source_images(ctx, name)
    result = {"counts": counts, "mixes": {}, "rows": []}
    if reached(until, "fetch"):
        return result
    from imp_data.mix.select import reconciliation_rows

    result["rows"] = reconciliation_rows(ctx, counts)
    if reached(until, "download") or sources:
        return result  # --sources fetches and normalizes just those; mixes need all their sources
    for mix in mixes or list(ctx.recipe.mixes):
        stats = build_mix(ctx, mix, until)
        if stats is not None:
            result["mixes"][mix] = stats
    return result
