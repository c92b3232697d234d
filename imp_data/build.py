"""The build: every stage as a plain function over the data root, shared by the CLI and Dagster.

Each stage reads the files the previous one wrote and writes its own atomically, so any stage can be
rerun alone (a Dagster asset materialization) and a crashed build resumes. `build()` chains them for
the CLI. Paths follow DESIGN §4; `Layout` (imp_data.layout) is the one place that spells them. With a
data root in object storage, `@synced` pulls each stage's inputs and pushes its outputs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from imp_data.dataroot import RemoteRoot
from imp_data.errors import ImpDataError
from imp_data.layout import Layout
from imp_data.recipe import ImageRoot, Recipe, SourceSpec
from imp_data.stage_sync import synced

STAGES = ("fetch", "normalized", "selected", "rendered", "planned", "shards", "report")


@dataclass
class BuildContext:
    """Runtime facts for a build (kept apart from the recipe): data root, parallelism, progress."""

    recipe: Recipe
    data_root: Path
    workers: int = 1
    progress: bool = True
    log: callable = print
    download: object | None = None  # imp_data.fetch.http.DownloadConfig for URL-only sources (None: defaults)
    remote: RemoteRoot | None = None  # data root in object storage; data_root is then its local cache
    _roots: dict[str, Path] = field(default_factory=dict)

    @property
    def layout(self) -> Layout:
        return Layout(self.data_root)

    def source(self, name: str) -> SourceSpec:
        try:
            return self.recipe.sources[name]
        except KeyError:
            raise ImpDataError(f"unknown source {name!r}; the recipe declares: {', '.join(self.recipe.sources)}") from None

    def sources_of(self, mix: str) -> list[str]:
        return list(self.recipe.mixes[mix].sources)


def local_location(location: str, data_root: Path) -> Path | None:
    """A local location as a path (relative ones resolve against the data root); None for URLs."""
    if "://" in location:
        return None
    path = Path(location).expanduser()
    return path if path.is_absolute() else data_root / path


def make_image_store(roots: tuple[tuple[str, str, str, str], ...]):
    """An ImageStore from (prefix, resolved location, member_prefix, recipe location) (picklable factory)."""
    from imp_data.fetch.image_store import ImageStore

    return ImageStore([ImageRoot(prefix=p, location=loc, member_prefix=m) for p, loc, m, _ in roots],
                      labels=[label for *_, label in roots])


def image_store_factory(ctx: BuildContext, source: str):
    """A picklable zero-argument factory for the source's image store, for worker processes."""
    spec = ctx.source(source)
    resolved = []
    for root in spec.images:
        local = local_location(root.location, ctx.data_root)
        if local is None:
            from imp_data.fetch.locations import resolve_location

            local = resolve_location(root.location, ctx.data_root, files=None, cache_dir=ctx.layout.raw(source))
        resolved.append((root.prefix, str(local), root.member_prefix, root.location))
    return functools.partial(make_image_store, tuple(resolved))


def read_frame(path: Path, what: str, hint: str) -> pl.DataFrame:
    if not path.is_file():
        raise ImpDataError(f"{path}: no {what} yet — {hint}")
    return pl.read_parquet(path)


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
    ctx._roots[source] = root
    return root


@synced("normalize")
def normalize_source(ctx: BuildContext, source: str):
    """Adapter records -> normalized/<source>.parquet + rejects/<source>.parquet; returns SourceCounts."""
    from imp_data.normalize import normalize_records
    from imp_data.progress import progress_bar
    from imp_data.sources.registry import get_adapter
    from imp_data.sources.base import resolve_files

    spec = ctx.source(source)
    adapter = get_adapter(spec.adapter)
    root = ctx._roots.get(source) or fetch_source(ctx, source)
    files = [str(p.relative_to(root)) for p in resolve_files(root, spec.files or adapter.default_files)]
    options = adapter.parse_options(spec.options)
    with progress_bar(desc=f"normalize {source}", unit="rec", enabled=ctx.progress) as bar:
        counts = normalize_records(source, adapter.read(root, files, options), ctx.layout.normalized(source),
                                   ctx.layout.source_rejects(source), progress=bar)
    return counts


@synced("downloads")
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

DROP_COLUMNS = {"id": pl.String, "source": pl.String, "source_id": pl.String, "stage": pl.String,
                "reason": pl.String, "detail": pl.String, "kept_id": pl.String, "distance": pl.Int32}


@synced("select")
def select_mix(ctx: BuildContext, mix: str) -> dict:
    """Drop rules + take-N for every source of the mix -> selected.parquet and drops.parquet."""
    from imp_data.io import atomic_path
    from imp_data.mix.select import SELECT_COLUMNS, select_source

    spec = ctx.recipe.mixes[mix]
    taken, drops, summary = [], [], {}
    for source, share in spec.sources.items():
        path = ctx.layout.normalized(source)
        if not path.is_file():
            raise ImpDataError(f"{path}: no normalized samples for {source!r} yet — run the normalize stage first")
        frame = pl.read_parquet(path, columns=SELECT_COLUMNS)  # never the texts: they stay on disk
        sel = select_source(frame, source, share, ctx.recipe.seed)
        taken.append(sel.taken)
        for rule, rows in sel.dropped.items():
            stage = "select"
            drops.append(rows.with_columns(pl.lit(stage).alias("stage"), pl.lit(rule).alias("reason"),
                                           pl.lit(f"dropped by rule {rule!r}").alias("detail"),
                                           pl.lit(None, pl.String).alias("kept_id"),
                                           pl.lit(None, pl.Int32).alias("distance")))
        summary[source] = {"target": share.take, "available": sel.available, "dropped": sel.dropped_counts,
                           "selected": sel.taken.height}
    selected = pl.concat(taken, how="vertical") if taken else pl.DataFrame()
    dropped = pl.concat(drops, how="vertical").select(list(DROP_COLUMNS)) if drops else pl.DataFrame(schema=DROP_COLUMNS)
    for path, frame in ((ctx.layout.selected(mix), selected), (ctx.layout.drops(mix), dropped)):
        with atomic_path(path) as tmp:
            frame.write_parquet(tmp)
    return summary


@synced("render")
def render_mix(ctx: BuildContext, mix: str) -> pl.DataFrame:
    """Render every selected image once into the mix's render cache -> renders.parquet (hashes, rejects)."""
    from imp_data.io import atomic_path
    from imp_data.mix.render import render_selection
    from imp_data.progress import progress_bar

    selected = read_frame(ctx.layout.selected(mix), "selection", "run the select stage first")
    render = ctx.recipe.mix_render(mix)
    parts = []
    n_images = selected.filter(pl.col("image").is_not_null()).height
    with progress_bar(total=n_images, desc=f"render {mix}", unit="img", enabled=ctx.progress) as bar:
        for source in ctx.sources_of(mix):
            rows = selected.filter(pl.col("source") == source)
            parts.append(render_selection(rows, source=source, store_factory=image_store_factory(ctx, source),
                                          render=render, render_dir=ctx.layout.render_dir(mix),
                                          workers=ctx.workers, progress=bar.update))
    renders = pl.concat(parts, how="vertical")
    with atomic_path(ctx.layout.renders(mix)) as tmp:
        renders.write_parquet(tmp)
    return renders


@synced("dedup")
def dedup_mix(ctx: BuildContext, mix: str) -> pl.DataFrame:
    """Dedup + decontamination over rendered hashes -> removals.parquet (empty when both are off)."""
    from imp_data.io import atomic_path
    from imp_data.mix.removals import find_removals

    selected = read_frame(ctx.layout.selected(mix), "selection", "run the select stage first")
    renders = read_frame(ctx.layout.renders(mix), "renders", "run the render stage first")
    removals = find_removals(ctx, mix, selected, renders)
    with atomic_path(ctx.layout.removals(mix)) as tmp:
        removals.write_parquet(tmp)
    return removals


@synced("plan")
def plan_stage(ctx: BuildContext, mix: str) -> pl.DataFrame:
    """Kept samples (selected - render rejects - removals) in seeded shuffled order -> plan.parquet.

    The order is computed on ids alone; the sample texts are then joined and written by polars'
    streaming engine, one Parquet row group per shard (so a shard writer reads just its rows) — the
    1M-sample plan never has to sit in memory whole. Returns the small order table.
    """
    from imp_data.io import atomic_path
    from imp_data.mix.plan import PLAN_COLUMNS, plan_mix

    for path, what in ((ctx.layout.selected(mix), "selection"), (ctx.layout.renders(mix), "renders"),
                       (ctx.layout.removals(mix), "removals")):
        if not path.is_file():
            raise ImpDataError(f"{path}: no {what} yet — run the earlier stages of mix {mix!r} first")
    renders = pl.scan_parquet(ctx.layout.renders(mix))
    dropped = pl.concat([renders.filter(pl.col("reason").is_not_null()).select("id"),
                         pl.scan_parquet(ctx.layout.removals(mix)).select("id")]).collect()["id"]
    kept = pl.scan_parquet(ctx.layout.selected(mix)).select("id").filter(~pl.col("id").is_in(dropped)).collect()
    shard_size = ctx.recipe.mix_shard_size(mix)
    order = plan_mix(kept, mix=mix, seed=ctx.recipe.seed, shard_size=shard_size)
    texts = pl.scan_parquet([ctx.layout.normalized(s) for s in ctx.sources_of(mix)]).select("id", "conversations", "meta")
    plan = (order.lazy()
            .join(pl.scan_parquet(ctx.layout.selected(mix)), on="id", how="left")
            .join(renders.filter(pl.col("reason").is_null()).drop("reason", "detail"), on="id", how="left")
            .join(texts, on="id", how="left")
            .sort("position")
            .select(PLAN_COLUMNS))
    with atomic_path(ctx.layout.plan(mix)) as tmp:
        plan.sink_parquet(tmp, row_group_size=shard_size, statistics=False, engine="streaming")
    return order


@synced("finalize")
def finalize_mix(ctx: BuildContext, mix: str) -> dict:
    """Index, wids list, rejects table and stats for a mix whose shards are all written."""
    from imp_data.shards.assemble import finalize_index, gather_rejects
    from imp_data.stats import write_stats

    finalize_index(ctx, mix)
    gather_rejects(ctx, mix)
    return write_stats(ctx, mix)


@synced("report")
def report_mix(ctx: BuildContext, mix: str) -> Path:
    """report.md + charts from stats.json."""
    from imp_data.report import write_report
    from imp_data.stats import load_stats

    return write_report(load_stats(ctx.layout.mix(mix)), ctx.layout.mix(mix))


# ---------------------------------------------------------------------------------------------------------
# the whole flow (CLI)


def reconciliation_rows(ctx: BuildContext, counts: dict) -> list[dict]:
    """Per mix and source: read = rejected + normalized, and normalized = dropped by rule + available."""
    from imp_data.mix.select import select_source

    rows = []
    for mix, spec in ctx.recipe.mixes.items():
        for source, share in spec.sources.items():
            if source not in counts:
                continue
            c = counts[source]
            frame = pl.read_parquet(ctx.layout.normalized(source), columns=["id", "source", "source_id", "image", "order"])
            sel = select_source(frame, source, share, ctx.recipe.seed)
            rows.append({"mix": mix, "source": source, "read": c.read, "rejected": sum(c.rejected.values()),
                         "normalized": c.normalized, "dropped": sel.dropped_counts, "available": sel.taken.height,
                         "balanced": c.read == c.normalized + sum(c.rejected.values())
                         and c.normalized == sel.taken.height + sum(sel.dropped_counts.values())})
    return rows


def build_mix(ctx: BuildContext, mix: str, until: str | None = None) -> dict | None:
    """select -> render -> dedup -> plan -> shards -> report for one mix (stopping after `until`)."""
    from imp_data.progress import progress_bar
    from imp_data.shards.assemble import write_mix_shards

    select_mix(ctx, mix)
    if until == "selected":
        return None
    render_mix(ctx, mix)
    dedup_mix(ctx, mix)
    if until == "rendered":
        return None
    plan = plan_stage(ctx, mix)
    if until == "planned":
        return None
    from imp_data.mix.plan import shard_count

    with progress_bar(total=shard_count(plan), desc=f"shards {mix}", unit="shard", enabled=ctx.progress) as bar:
        write_mix_shards(ctx, mix, progress=bar.update)
    if until == "shards":
        return None
    stats = finalize_mix(ctx, mix)
    report_mix(ctx, mix)
    return stats


def build(ctx: BuildContext, *, sources: list[str] | None = None, until: str | None = None,
          mixes: list[str] | None = None) -> dict:
    """Run the build; returns {"counts": {source: SourceCounts}, "mixes": {mix: stats}, "rows": [...]}."""
    if until is not None and until not in STAGES:
        raise ImpDataError(f"--until {until!r}: valid stages are {', '.join(STAGES)}")
    wanted = sources or list(dict.fromkeys(s for m in ctx.recipe.mixes.values() for s in m.sources))
    for name in wanted:
        ctx.source(name)
    counts = {}
    for name in wanted:
        fetch_source(ctx, name)
        if until == "fetch":
            continue
        counts[name] = normalize_source(ctx, name)
        download_source_images(ctx, name)
    result = {"counts": counts, "mixes": {}, "rows": []}
    if until == "fetch":
        return result
    result["rows"] = reconciliation_rows(ctx, counts)
    if until == "normalized" or sources:
        return result  # --sources fetches and normalizes just those; mixes need all their sources
    for mix in mixes or list(ctx.recipe.mixes):
        stats = build_mix(ctx, mix, until)
        if stats is not None:
            result["mixes"][mix] = stats
    return result
