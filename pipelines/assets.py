"""Asset factories. Each stage output is its own asset (docs/design.md §8): per source an observed
`published` source asset, `raw`, `normalized` and, for URL-only sources, `downloads`; per mix `selection`,
`renders`, `removals`, `plan`, `shards` (partitioned), `index` and `report`. Each asset calls one
`imp_data.build` stage and turns its result into UI metadata; nothing here computes anything the CLI does not.

Steps: the assets of a chain share one step, a `multi_asset` with `can_subset=True` — per source (fetch ->
normalize -> download), per mix "prepare" (select -> render -> dedup -> plan) and "finalize" (index ->
report), with the shards asset a step of its own (it is partitioned). Checks run inside the step of the
asset they check (pipelines/checks.py). A step costs Dagster a handful of stored events and a lookup of its
inputs' versions whatever it does, so one step per chain keeps a whole-mix run close to the CLI's time;
selecting one asset (or only its checks) in the UI still runs just that part of the step.

Staleness is Dagster's own: each asset's `code_version` is its stage's code version plus a digest of
the recipe fields that stage reads (`imp_data.stage_inputs`), and each materialization's data version is
the content hash of what it wrote (the stage's stamp). A recipe edit marks the assets whose fields
changed; an edited source file shows as a new data version of `published/<source>` once observed; an
asset rebuilt into the same bytes keeps its data version, so what follows it stays fresh.
"""

import functools
import random
from collections.abc import Callable, Iterator

import dagster as dg
import polars as pl

from imp_data import build as stages
from imp_data.audit.report import source_table
from imp_data.core.errors import FetchError
from imp_data.core.layout import mix_unit, normalized_unit
from imp_data.core.recipe import Recipe
from imp_data.identities import published_identity
from imp_data.mix.plan import shard_count
from imp_data.shards.assemble import write_mix_shards
from imp_data.stage_inputs import asset_code_version
from imp_data.storage import sync as stage_sync
from pipelines.checks import CHECKS, check_specs
from pipelines.metadata import (
    charts_inline,
    counts_metadata,
    reuse_metadata,
    shards_metadata,
    shards_version,
    table_metadata,
)
from pipelines.resources import DataRoot, FetchSettings

FETCH_RETRIES, FETCH_DELAY_S = 3, 5.0  # per fetch: 5 s, then 10 s, then 20 s, each +-50%
FETCH_POOL = "imp_fetch"  # concurrency pool: limit parallel downloads in dagster.yaml / the UI


def published_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["published", source])


def raw_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", source])


def normalized_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["normalized", source])


def downloads_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["downloads", source])


def image_keys(recipe: Recipe, sources) -> list[dg.AssetKey]:
    """What a mix's images come from: each source's raw files, and its downloads when it has URLs only."""
    return [downloads_key(s) if recipe.sources[s].download_images else raw_key(s) for s in sources]


def mix_key(mix: str, what: str) -> dg.AssetKey:
    return dg.AssetKey([mix, what])


def shard_partitions(recipe: Recipe, mix: str) -> dg.StaticPartitionsDefinition:
    n = recipe.mixes[mix].partitions
    return dg.StaticPartitionsDefinition([f"{k:04d}" for k in range(n)])


def partition_shards(partition_key: str, n_partitions: int, n_shards: int) -> list[int]:
    """Shards of one partition: s mod N == k (the shard count is unknown when partitions are declared)."""
    k = int(partition_key)
    return list(range(k, n_shards, n_partitions))


Link = tuple[dg.AssetKey, str, Callable[[], dg.MaterializeResult]]
"""One asset of a step's chain: its key, the stage output it is (which names its checks), how to build it."""


def run_chain(context: dg.AssetExecutionContext, data_root: DataRoot, recipe: Recipe, subject: str,
              links: list[Link]) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Build the selected assets of a chain in order, each followed by its selected checks. At a failed
    check stop: what follows would be built on what the check refused (Dagster then fails the step,
    naming the check, and skips what depends on the assets not built)."""
    for key, output, materialize in links:
        if key in context.selected_asset_keys:
            yield materialize()
        for check in CHECKS.get(output, []):
            if dg.AssetCheckKey(key, check.name) in context.selected_asset_check_keys:
                r = check.function(data_root, recipe, subject)
                yield dg.AssetCheckResult(asset_key=key, check_name=check.name, passed=r.passed,
                                          metadata=r.metadata, description=r.description)
                if not r.passed:
                    return


def with_fetch_retries(context: dg.AssetExecutionContext, fetch: Callable):
    """Run a fetch (or a download); when the network or the server failed (`FetchError.transient`, or a
    connection error nothing wrapped), ask Dagster to run the step again later. Nothing else retries: a
    missing file, a 404 or a normalize error would fail the same way again. Nothing of the step after the
    fetch has run, and what ran before it is reused from its stamps on the retry."""
    try:
        return fetch()
    except (FetchError, ConnectionError, TimeoutError) as exc:
        if isinstance(exc, FetchError) and not exc.transient:
            raise
        delay = FETCH_DELAY_S * 2 ** context.retry_number * random.uniform(0.5, 1.5)
        raise dg.RetryRequested(max_retries=FETCH_RETRIES, seconds_to_wait=delay) from exc


def source_assets(recipe: Recipe, source: str) -> list:
    spec = recipe.sources[source]

    @dg.observable_source_asset(key=published_key(source), group_name="sources",
                                description=f"`{source}` where it is published ({spec.location}): observing it "
                                "hashes the local files (or reads the pinned location) so an edit marks it stale")
    def published(data_root: DataRoot) -> dg.DataVersion:
        return dg.DataVersion(published_identity(data_root.context(recipe), source))

    specs = [
        dg.AssetSpec(raw_key(source), deps=[published], group_name="sources", kinds={"python"},
                     code_version=asset_code_version(recipe, "fetch", source),
                     description=f"`{source}` as published ({spec.adapter}): {spec.location}",
                     metadata={"location": spec.location, "license": spec.license or "see docs/sources.md"}),
        dg.AssetSpec(normalized_key(source), deps=[raw_key(source)], group_name="sources", kinds={"parquet"},
                     code_version=asset_code_version(recipe, "normalize", source), skippable=True,
                     description=f"`{source}` in the canonical schema; rejects in rejects/{source}.parquet"),
    ]
    if spec.download_images:
        specs.append(dg.AssetSpec(
            downloads_key(source), deps=[normalized_key(source)], group_name="sources", kinds={"python"},
            code_version=asset_code_version(recipe, "download", source), skippable=True,
            description=f"`{source}`'s images fetched from their URLs into raw/{source}/ (download_images: true)"))

    @dg.multi_asset(name=f"source__{source}", specs=specs, can_subset=True, pool=FETCH_POOL,
                    check_specs=check_specs(normalized_key(source), "normalized"),
                    description=f"fetch, normalize{' and download' if spec.download_images else ''} `{source}`")
    def source_step(context: dg.AssetExecutionContext, data_root: DataRoot, fetch: FetchSettings):
        fetch.apply()

        @functools.cache
        def root():  # where the files are: fetched once per step (verified, not fetched again, when present)
            return with_fetch_retries(context, lambda: stages.fetch_source(data_root.context(recipe, fetch), source))

        def raw() -> dg.MaterializeResult:
            path = root()
            return dg.MaterializeResult(asset_key=raw_key(source), metadata={"path": dg.MetadataValue.path(str(path))},
                                        data_version=dg.DataVersion(published_identity(data_root.context(recipe),
                                                                                        source)))

        def normalized() -> dg.MaterializeResult:
            ctx = data_root.context(recipe, fetch)
            counts = stages.normalize_source(ctx, source, root())
            path = ctx.layout.normalized(source)
            return dg.MaterializeResult(asset_key=normalized_key(source), metadata={
                **counts_metadata(counts), **reuse_metadata(ctx), **table_metadata(path),
                "path": dg.MetadataValue.path(str(path))},
                data_version=dg.DataVersion(ctx.output_version(normalized_unit(source))))

        def downloads() -> dg.MaterializeResult:
            ctx = data_root.context(recipe, fetch)
            summary = with_fetch_retries(context, lambda: stages.download_source_images(ctx, source))
            return dg.MaterializeResult(asset_key=downloads_key(source),
                                        metadata={"downloads": dg.MetadataValue.json(summary)})

        links = [(raw_key(source), "raw", raw), (normalized_key(source), "normalized", normalized)]
        if spec.download_images:
            links.append((downloads_key(source), "downloads", downloads))
        yield from run_chain(context, data_root, recipe, source, links)

    return [published, source_step]


def mix_assets(recipe: Recipe, mix: str) -> list[dg.AssetsDefinition]:
    spec = recipe.mixes[mix]
    group = f"mix_{mix}"
    normalized = [normalized_key(s) for s in spec.sources]

    def asset_spec(what: str, stage: str, deps: list, description: str, kind: str = "parquet") -> dg.AssetSpec:
        # skippable: a check that fails earlier in the step stops the step before this asset
        return dg.AssetSpec(mix_key(mix, what), deps=deps, group_name=group, kinds={kind}, skippable=True,
                            code_version=asset_code_version(recipe, stage, mix), description=description)

    def version(ctx, what: str) -> dg.DataVersion:
        return dg.DataVersion(ctx.output_version(mix_unit(mix, what)))

    prepare_specs = [
        asset_spec("selection", "select", normalized, "Drop rules (e.g. TextCaps) and seeded take-N per source"),
        asset_spec("renders", "render", [mix_key(mix, "selection"), *image_keys(recipe, spec.sources)],
                   "Every selected image decoded once: resize-then-pad JPEG + sha256 + phash; samples lost to "
                   "bad images are replaced from the seeded reserve"),
        asset_spec("removals", "dedup", [mix_key(mix, "renders")],
                   "Duplicate and benchmark-contamination removals over the rendered images' hashes"),
        asset_spec("plan", "plan", [mix_key(mix, w) for w in ("selection", "renders", "removals")] + normalized,
                   "Seeded global shuffle, keys and shard numbers, with every sample's text"),
    ]

    @dg.multi_asset(name=f"{mix}__prepare", specs=prepare_specs, can_subset=True,
                    check_specs=[c for s in prepare_specs for c in check_specs(s.key, s.key.path[-1])],
                    description=f"select, render, dedup and plan `{mix}`")
    def prepare(context: dg.AssetExecutionContext, data_root: DataRoot):
        def selection() -> dg.MaterializeResult:
            ctx = data_root.context(recipe)
            summary = stages.select_mix(ctx, mix)
            rows = "\n".join(f"| {s} | {e['target']} | {e['available']} | "
                             f"{', '.join(f'{k} {v}' for k, v in e['dropped'].items()) or '-'} | {e['selected']} |"
                             for s, e in summary.items())
            table = "| source | target | available | dropped | selected |\n|---|---:|---:|---|---:|\n" + rows
            return dg.MaterializeResult(asset_key=mix_key(mix, "selection"), metadata={
                "selected": sum(e["selected"] for e in summary.values()), "per_source": dg.MetadataValue.md(table),
                "summary": dg.MetadataValue.json(summary), **reuse_metadata(ctx),
                **table_metadata(ctx.layout.selected(mix))}, data_version=version(ctx, "selection"))

        def renders() -> dg.MaterializeResult:
            ctx = data_root.context(recipe)
            table = stages.render_mix(ctx, mix)
            failed = table.filter(pl.col("reason").is_not_null())
            by_reason = dict(failed.group_by("reason").len().sort("reason").rows())
            return dg.MaterializeResult(asset_key=mix_key(mix, "renders"), metadata={
                "rendered": table.height - failed.height, "render_rejects": failed.height,
                "render_rejects_by_reason": dg.MetadataValue.json(by_reason), **reuse_metadata(ctx),
                **table_metadata(ctx.layout.renders(mix))}, data_version=version(ctx, "renders"))

        def removals() -> dg.MaterializeResult:
            ctx = data_root.context(recipe)
            table = stages.dedup_mix(ctx, mix)
            removed = dict(table.group_by("reason").len().sort("reason").rows()) if table.height else {}
            return dg.MaterializeResult(asset_key=mix_key(mix, "removals"), metadata={
                "removed": table.height, "removed_by_reason": dg.MetadataValue.json(removed),
                **reuse_metadata(ctx), **table_metadata(ctx.layout.removals(mix))},
                data_version=version(ctx, "removals"))

        def plan() -> dg.MaterializeResult:
            ctx = data_root.context(recipe)
            frame = stages.plan_stage(ctx, mix)
            return dg.MaterializeResult(asset_key=mix_key(mix, "plan"), metadata={
                "samples": frame.height, "shards": shard_count(frame),
                "path": dg.MetadataValue.path(str(ctx.layout.plan(mix))), **reuse_metadata(ctx),
                **table_metadata(ctx.layout.plan(mix))}, data_version=version(ctx, "plan"))

        links = [(s.key, s.key.path[-1], f) for s, f in zip(prepare_specs, (selection, renders, removals, plan))]
        yield from run_chain(context, data_root, recipe, mix, links)

    # single_run: "materialize all partitions" in the UI is one run over the range, not a run per partition
    @dg.asset(key=mix_key(mix, "shards"), deps=[mix_key(mix, "plan"), mix_key(mix, "renders")], group_name=group,
              partitions_def=shard_partitions(recipe, mix), backfill_policy=dg.BackfillPolicy.single_run(),
              kinds={"webdataset"}, code_version=asset_code_version(recipe, "shards", mix),
              description="WebDataset tars (partition k holds shards s with s mod N == k); metadata: samples "
              "and bytes per partition, a preview of the first samples")
    def shards(context: dg.AssetExecutionContext, data_root: DataRoot) -> dg.MaterializeResult:
        ctx = data_root.context(recipe)
        if ctx.remote is not None:
            stage_sync.pull_plan_only(ctx, mix)
        n_shards = shard_count(pl.read_parquet(ctx.layout.plan(mix), columns=["shard"]))
        # a run may cover one partition or a range of them (a single-run backfill)
        mine = sorted(s for key in context.partition_keys for s in partition_shards(key, spec.partitions, n_shards))
        counts = write_mix_shards(ctx, mix, mine) if mine else {"written": 0, "skipped": 0}
        return dg.MaterializeResult(metadata={"shards": dg.MetadataValue.json(mine), **counts,
                                              **shards_metadata(ctx, mix, mine, spec.partitions)},
                                    data_version=dg.DataVersion(shards_version(ctx, mix, mine)))

    finalize_specs = [
        # everything finalizing reads, so a run orders it after all of them
        asset_spec("index", "finalize",
                   [mix_key(mix, w) for w in ("shards", "plan", "selection", "renders", "removals")] + normalized
                   + [raw_key(s) for s in spec.sources]
                   + [downloads_key(s) for s in spec.sources if recipe.sources[s].download_images],
                   "index.parquet, index.wids.json, rejects.parquet and stats.json (reconciled)"),
        asset_spec("report", "report", [mix_key(mix, "index")],
                   "The mix audit: per-source targets vs taken, rejects and drops by reason, charts", "markdown"),
    ]

    @dg.multi_asset(name=f"{mix}__finalize", specs=finalize_specs, can_subset=True,
                    check_specs=check_specs(mix_key(mix, "index"), "index"),
                    description=f"index, rejects, stats and report of `{mix}`")
    def finalize(context: dg.AssetExecutionContext, data_root: DataRoot):
        def index() -> dg.MaterializeResult:
            ctx = data_root.context(recipe)
            stats = stages.finalize_mix(ctx, mix)
            t = stats["totals"]
            return dg.MaterializeResult(asset_key=mix_key(mix, "index"), metadata={
                "samples": t["taken"], "shards": t["shards"], "rejected": t["rejected"], "dropped": t["dropped"],
                "reject_rate": t["reject_rate"], "path": dg.MetadataValue.path(str(ctx.layout.mix(mix))),
                "per_source": dg.MetadataValue.md(source_table(stats)), **reuse_metadata(ctx),
                **table_metadata(ctx.layout.index(mix))}, data_version=version(ctx, "index"))

        def report() -> dg.MaterializeResult:
            from imp_data.audit.stats import load_stats

            ctx = data_root.context(recipe)
            mix_dir = ctx.layout.mix(mix)
            text = stages.report_mix(ctx, mix).read_text()
            return dg.MaterializeResult(asset_key=mix_key(mix, "report"), metadata={
                "report": dg.MetadataValue.md(charts_inline(text, mix_dir)),
                "per_source": dg.MetadataValue.md(source_table(load_stats(mix_dir))),
                "path": dg.MetadataValue.path(str(ctx.layout.report(mix))), **reuse_metadata(ctx),
            }, data_version=version(ctx, "report"))

        yield from run_chain(context, data_root, recipe, mix, [(mix_key(mix, "index"), "index", index),
                                                               (mix_key(mix, "report"), "report", report)])

    return [prepare, shards, finalize]
