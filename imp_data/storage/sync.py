"""What each build stage pulls from and pushes to a remote data root (mechanics: `imp_data.storage.dataroot`).

`@synced(stage)` wraps a stage function `(ctx, subject, ...)`. With a local data root it changes nothing.
With a remote one it pulls the units the stage reads before it runs, and pushes the units it wrote once it
returns. So a Dagster step on a fresh pod (or `imp-data build` on another machine) finds its inputs and
leaves its outputs in the bucket. Shards are the exception: `write_mix_shards` pulls and pushes one
shard at a time through `pull_shards`, `pull_renders` and `push_shard`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import polars as pl

from imp_data.core.io import tree_files
from imp_data.core.layout import mix_unit, normalized_unit, raw_unit, shard_unit
from imp_data.core.locations import under_root


def _relative_locations(ctx, source: str, *, images: bool) -> list[str]:
    """The source's locations that are folders under the data root (placed in the bucket by hand)."""
    spec = ctx.source(source)
    locations = [r.location for r in spec.images] if images else [spec.location]
    return [loc for loc in locations if under_root(loc)]


# ---- per stage ------------------------------------------------------------------------------------


def _pull_fetch(ctx, source: str) -> None:
    for location in _relative_locations(ctx, source, images=False):
        if ctx.remote.pull_tree(location) == 0 and not (ctx.data_root / location).exists():
            from imp_data.core.errors import ImpDataError

            raise ImpDataError(f"{ctx.remote.url}/{location}: nothing there for source {source!r} — upload the "
                               "source's files to the data root or point its location elsewhere")
    ctx.remote.pull(raw_unit(source))


def _stamp(ctx, unit: str) -> list[Path]:
    """The unit's stamp (imp_data.core.fingerprint) travels with it, so a fresh machine reuses what it made."""
    return [ctx.layout.stamp(unit)]


def _push_raw(ctx, source: str) -> None:
    ctx.remote.push(raw_unit(source), tree_files(ctx.layout.raw(source)))


def _push_normalized(ctx, source: str) -> None:
    unit = normalized_unit(source)
    ctx.remote.push(unit, [ctx.layout.normalized(source), ctx.layout.source_counts(source),
                           ctx.layout.source_rejects(source), *_stamp(ctx, unit)])


def _pull_own_normalized(ctx, source: str) -> None:
    """What the last normalize wrote, with its stamp: unchanged inputs then cost no work."""
    ctx.remote.pull(normalized_unit(source))


def _pull_normalized(ctx, mix: str) -> None:
    for source in ctx.sources_of(mix):
        ctx.remote.pull(normalized_unit(source))


def _pull_selection(ctx, mix: str) -> None:
    _pull_normalized(ctx, mix)
    ctx.remote.pull(mix_unit(mix, "selection"))


def _push_selection(ctx, mix: str) -> None:
    unit = mix_unit(mix, "selection")
    ctx.remote.push(unit, [ctx.layout.selected(mix), ctx.layout.drops(mix), ctx.layout.reserve(mix),
                           *_stamp(ctx, unit)])


def _pull_render(ctx, mix: str) -> None:
    """Selection, the image folders and the render tables: chunks already rendered are not redone, and
    their JPEGs stay in the bucket until a shard needs them."""
    ctx.remote.pull(mix_unit(mix, "selection"))
    for source in ctx.sources_of(mix):
        for location in _relative_locations(ctx, source, images=True):
            ctx.remote.pull_tree(location)
        ctx.remote.pull(raw_unit(source))
    ctx.remote.pull(mix_unit(mix, "renders"))


def _push_render(ctx, mix: str) -> None:
    render_dir, unit = ctx.layout.render_dir(mix), mix_unit(mix, "renders")
    ctx.remote.push(unit, [ctx.layout.renders(mix), ctx.layout.fill(mix), *_stamp(ctx, unit)],
                    bulk=[render_dir / "cache"])
    for source in ctx.sources_of(mix):  # image roots on the Hub or at URLs were fetched into raw/<source>
        _push_raw(ctx, source)


def _pull_dedup(ctx, mix: str) -> None:
    for what in ("selection", "renders", "removals"):
        ctx.remote.pull(mix_unit(mix, what))


def _push_removals(ctx, mix: str) -> None:
    unit = mix_unit(mix, "removals")
    ctx.remote.push(unit, [ctx.layout.removals(mix), ctx.layout.contamination(mix), *_stamp(ctx, unit)])


def _pull_plan(ctx, mix: str) -> None:
    _pull_normalized(ctx, mix)
    for what in ("selection", "renders", "removals", "plan"):
        ctx.remote.pull(mix_unit(mix, what))


def _push_plan(ctx, mix: str) -> None:
    ctx.remote.push(mix_unit(mix, "plan"), [ctx.layout.plan(mix), *_stamp(ctx, mix_unit(mix, "plan"))])


def pull_mix_tables(ctx, mix: str) -> None:
    """Every table of the mix and its sources, the shards' index parts, and stats once they exist:
    what finalizing, the report and the checks read. It pulls no tars and no JPEGs."""
    _pull_plan(ctx, mix)
    ctx.remote.pull(mix_unit(mix, "plan"))
    ctx.remote.pull(mix_unit(mix, "report"))
    for source in ctx.sources_of(mix):
        ctx.remote.pull(raw_unit(source), match=lambda rel: rel.endswith("/downloads.parquet"))
    plan = ctx.layout.plan(mix)
    if plan.is_file():
        for shard in pl.read_parquet(plan, columns=["shard"])["shard"].unique().sort().to_list():
            ctx.remote.pull(shard_unit(mix, shard), match=lambda rel: rel.endswith(".parquet"))
    ctx.remote.pull(mix_unit(mix, "index"))


def pull_built_mix(remote, layout, mix: str) -> None:
    """A finished mix, tars included (no recipe needed): what training from the cache or verifying
    every shard reads. Serialised by a lock in the cache: the ranks of one node share it, one downloads
    and the rest verify."""
    with remote.locked():
        _pull_built_mix(remote, layout, mix)


def _pull_built_mix(remote, layout, mix: str) -> None:
    remote.pull(mix_unit(mix, "index"))  # the shards and their index: all training reads (not the plan)
    index = layout.index(mix)
    if index.is_file():
        for shard in pl.read_parquet(index, columns=["shard"])["shard"].unique().sort().to_list():
            remote.pull(shard_unit(mix, shard))
    remote.pull(mix_unit(mix, "report"))


def _push_index(ctx, mix: str) -> None:
    lay = ctx.layout
    unit = mix_unit(mix, "index")
    ctx.remote.push(unit, [lay.index(mix), lay.wids(mix), lay.rejects(mix), lay.stats(mix), *_stamp(ctx, unit)])


def _push_report(ctx, mix: str) -> None:
    files = ctx.layout.mix_files(mix)
    unit = mix_unit(mix, "report")
    ctx.remote.push(unit, [files.report, files.card, *files.chart_files(), *_stamp(ctx, unit)])


def _nothing(ctx, subject: str) -> None:
    return None


PULL_PUSH: dict[str, tuple[Callable, Callable]] = {  # by stage name (imp_data.core.stages)
    "fetch": (_pull_fetch, _push_raw),
    "normalize": (_pull_own_normalized, _push_normalized),
    "download": (_nothing, _push_raw),
    "select": (_pull_selection, _push_selection),
    "render": (_pull_render, _push_render),
    "dedup": (_pull_dedup, _push_removals),
    "plan": (_pull_plan, _push_plan),
    "finalize": (pull_mix_tables, _push_index),
    "report": (pull_mix_tables, _push_report),
}


def synced(stage: str):
    """Decorator: run the stage between its pull and its push when the data root is remote."""
    pull, push = PULL_PUSH[stage]

    def wrap(fn):
        @functools.wraps(fn)
        def run(ctx, subject, *args, **kwargs):
            if ctx.remote is None:
                return fn(ctx, subject, *args, **kwargs)
            pull(ctx, subject)
            out = fn(ctx, subject, *args, **kwargs)
            push(ctx, subject)
            return out

        return run

    return wrap


# ---- shards, one at a time ------------------------------------------------------------------------


def pull_plan_only(ctx, mix: str) -> None:
    ctx.remote.pull(mix_unit(mix, "plan"))


def pull_shards(ctx, mix: str, shards: list[int]) -> None:
    """The shards already written (the shard writer verifies them, then skips rather than rewrites)."""
    for shard in shards:
        ctx.remote.pull(shard_unit(mix, shard))


def pull_renders(ctx, mix: str, cache_keys: list[str]) -> None:
    """The rendered JPEGs (render cache entries) of the shards that must be written."""
    render = ctx.layout.render_dir(mix) / "cache"
    needed = [(render / key).relative_to(ctx.data_root).as_posix() for key in cache_keys]
    ctx.remote.pull_files(needed, what=f"rendered images of mix {mix!r}")


def push_shard(ctx, mix: str, shard: int) -> None:
    files = ctx.layout.mix_files(mix)
    ctx.remote.push(shard_unit(mix, shard), [files.shard(shard, mix), files.index_part(shard)])


# ---- training ---------------------------------------------------------------------------------------


def local_data_root_for_training(data_root: str | Path, cache: str | Path | None, mix: str) -> Path:
    """The local directory a training job reads `mix` from: a path (or `file://` URL) is its own; a remote
    root is its cache, once the built mix is pulled into it. The one pull-before-train path of
    `imp-data train` and the Dagster checkpoint asset."""
    from imp_data.core.layout import Layout
    from imp_data.storage.dataroot import open_data_root

    local, remote = open_data_root(data_root, cache)
    if remote is not None:
        pull_built_mix(remote, Layout(local), mix)
    return local
