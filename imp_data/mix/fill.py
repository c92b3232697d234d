"""Exact take-N under attrition: replacements for samples lost after selection, in the seeded order.

Selection takes each source's first N samples of a seeded order and keeps the rest, in that order, as
its reserve (`reserve.parquet`). Rendering and dedup/decontamination then lose some of the N (a dead
link, a corrupt image, a duplicate, a benchmark image). The fill loop renders the next samples of the
same order, as many as were lost, and runs dedup again over the larger set, until every source has N
survivors or its reserve is empty. Everything is a function of the seed and the inputs, so the result is
deterministic, exactly N whenever N usable samples exist, and the work stays proportional: a source never
renders more than N plus its losses. The reserve samples brought in are written to `fill.parquet`; with
`selected.parquet` they form the mix's activated samples, and the rest of the reserve stays `not_sampled`.
"""

from __future__ import annotations

import polars as pl

from imp_data.core.layout import Layout
from imp_data.core.tables import RENDER_COLUMNS


def activated(layout: Layout, mix: str, columns: list[str] | None = None) -> pl.DataFrame:
    """The samples a mix rendered: the selection plus the reserve samples the fill loop brought in."""
    frames = [pl.read_parquet(layout.selected(mix), columns=columns)]
    if layout.fill(mix).is_file():
        frames.append(pl.read_parquet(layout.fill(mix), columns=columns))
    return pl.concat(frames, how="vertical")


def unsampled_drops(layout: Layout, mix: str) -> pl.DataFrame:
    """The drop table with the reserve samples the fill loop took removed from `not_sampled`."""
    drops = pl.read_parquet(layout.drops(mix))
    if not layout.fill(mix).is_file():
        return drops
    used = pl.read_parquet(layout.fill(mix), columns=["id"])["id"]
    return drops.filter(~((pl.col("reason") == "not_sampled") & pl.col("id").is_in(used)))


def deficits(active: pl.DataFrame, lost: set[str], targets: dict[str, int | str]) -> dict[str, int]:
    """Per source with a numeric take: how many survivors it lacks (active samples not lost)."""
    alive = active.filter(~pl.col("id").is_in(list(lost)))
    counts = dict(alive.group_by("source").len().rows())
    return {s: t - counts.get(s, 0) for s, t in targets.items() if t != "all" and counts.get(s, 0) < t}


def next_from_reserve(reserve: pl.DataFrame, used: dict[str, int], wanted: dict[str, int]) -> pl.DataFrame:
    """The next `wanted[s]` reserve samples of each source after the `used[s]` already taken (in order)."""
    parts = []
    for source, n in wanted.items():
        rows = reserve.filter(pl.col("source") == source)
        start = used.get(source, 0)
        take = rows.slice(start, n)
        if take.height:
            parts.append(take)
            used[source] = start + take.height
    return pl.concat(parts, how="vertical") if parts else reserve.clear()


def render_rows(ctx, mix: str, rows: pl.DataFrame, bar) -> tuple[list[pl.DataFrame], int, int]:
    """Render `rows` (any sources of the mix) through the content-addressed cache, source by source."""
    from imp_data.fetch.image_store import image_store_factory
    from imp_data.mix.render import render_selection

    parts, rendered, reused = [], 0, 0
    for source in ctx.sources_of(mix):
        part = rows.filter(pl.col("source") == source)
        if not part.height:
            continue
        table, r, u = render_selection(part, store_factory=image_store_factory(ctx, source),
                                       render=ctx.recipe.mix_render(mix), render_dir=ctx.layout.render_dir(mix),
                                       hashes=ctx.hashes, previous=ctx.layout.renders(mix),
                                       trust_previous=ctx.remote is not None, workers=ctx.workers,
                                       progress=bar.update, limits=ctx.recipe.limits.model_dump())
        parts.append(table)
        rendered, reused = rendered + r, reused + u
    return parts, rendered, reused


def render_and_fill(ctx, mix: str, selected: pl.DataFrame, reserve: pl.DataFrame, bar):
    """The fill loop (module docstring): returns (renders of every activated sample, the reserve samples
    activated, images rendered, images reused)."""
    from imp_data.mix.removals import find_removals

    spec = ctx.recipe.mixes[mix]
    targets = {s: share.take for s, share in spec.sources.items()}
    removes = spec.dedup.mode != "off" or (spec.decontaminate.benchmarks and spec.decontaminate.drop)
    active, pending, used = selected, selected, {}
    parts, rendered, reused = [], 0, 0
    while True:
        new, r, u = render_rows(ctx, mix, pending, bar)
        parts, rendered, reused = parts + new, rendered + r, reused + u
        renders = pl.concat(parts, how="vertical") if parts else None
        if not reserve.height:
            break
        lost = set(renders.filter(pl.col("reason").is_not_null())["id"].to_list()) if renders is not None else set()
        if removes and renders is not None:
            lost |= set(find_removals(ctx, mix, active, renders)["id"].to_list())
        pending = next_from_reserve(reserve, used, deficits(active, lost, targets))
        if not pending.height:
            break
        active = pl.concat([active, pending], how="vertical")

    renders = pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=RENDER_COLUMNS)
    return renders, active.slice(selected.height), rendered, reused
