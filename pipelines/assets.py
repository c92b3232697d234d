"""Asset factories: per source an observed `published` source asset, a raw (fetch) and a normalized
asset; per mix selection -> renders -> plan -> shards (partitioned) -> index -> report. Each body calls one
`imp_data.build` stage and turns its result into UI metadata; nothing here computes anything the CLI
does not.

Staleness is Dagster's own: each asset's `code_version` is its stage's code version plus a digest of
the recipe fields that stage reads (`imp_data.stage_inputs`), and each materialization's data version is
the content hash of what it wrote (the stage's stamp). A recipe edit marks the assets whose fields
changed; an edited source file shows as a new data version of `published/<source>` once observed; an
asset rebuilt into the same bytes keeps its data version, so what follows it stays fresh.
"""

import base64
from pathlib import Path

import dagster as dg
import polars as pl

from imp_data import build as stages
from imp_data import stage_sync
from imp_data.identities import published_identity
from imp_data.mix.plan import shard_count
from imp_data.recipe import Recipe
from imp_data.report import source_table
from imp_data.shards.assemble import write_mix_shards
from imp_data.stage_inputs import asset_code_version
from pipelines.resources import DataRoot, FetchSettings

FETCH_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
FETCH_POOL = "imp_fetch"  # concurrency pool: limit parallel downloads in dagster.yaml / the UI


def published_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["published", source])


def raw_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", source])


def normalized_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["normalized", source])


def mix_key(mix: str, what: str) -> dg.AssetKey:
    return dg.AssetKey([mix, what])


def shard_partitions(recipe: Recipe, mix: str) -> dg.StaticPartitionsDefinition:
    n = recipe.mixes[mix].partitions
    return dg.StaticPartitionsDefinition([f"{k:04d}" for k in range(n)])


def partition_shards(partition_key: str, n_partitions: int, n_shards: int) -> list[int]:
    """Shards of one partition: s mod N == k (the shard count is unknown when partitions are declared)."""
    k = int(partition_key)
    return list(range(k, n_shards, n_partitions))


def reuse_metadata(ctx) -> dict:
    """What this step redid and reused (the CLI prints the same lines)."""
    return {"reuse": dg.MetadataValue.json(ctx.reuse),
            "redone": sum(r["redone"] for r in ctx.reuse), "reused": sum(r["reused"] for r in ctx.reuse)}


def counts_metadata(counts) -> dict:
    return {"read": counts.read, "normalized": counts.normalized, "rejected": sum(counts.rejected.values()),
            "rejected_by_reason": dg.MetadataValue.json(counts.rejected), "repeated_ids": counts.repeated_ids}


def source_assets(recipe: Recipe, source: str) -> list:
    spec = recipe.sources[source]

    @dg.observable_source_asset(key=published_key(source), group_name="sources",
                                description=f"`{source}` where it is published ({spec.location}): observing it "
                                "hashes the local files (or reads the pinned location) so an edit marks it stale")
    def published(data_root: DataRoot) -> dg.DataVersion:
        return dg.DataVersion(published_identity(data_root.context(recipe), source))

    @dg.asset(key=raw_key(source), deps=[published], group_name="sources", retry_policy=FETCH_RETRY,
              pool=FETCH_POOL, kinds={"python"}, code_version=asset_code_version(recipe, "fetch", source),
              description=f"`{source}` as published ({spec.adapter}): {spec.location}",
              metadata={"location": spec.location, "license": spec.license or "see SOURCES.md"})
    def raw(data_root: DataRoot, fetch: FetchSettings) -> dg.MaterializeResult:
        fetch.apply()
        ctx = data_root.context(recipe)
        root = stages.fetch_source(ctx, source)
        return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(root))},
                                    data_version=dg.DataVersion(published_identity(ctx, source)))

    @dg.asset(key=normalized_key(source), deps=[raw], group_name="sources", kinds={"parquet"},
              code_version=asset_code_version(recipe, "normalize", source),
              description=f"`{source}` in the canonical schema; rejects in rejects/{source}.parquet")
    def normalized(data_root: DataRoot, fetch: FetchSettings) -> dg.MaterializeResult:
        ctx = data_root.context(recipe, fetch)
        counts = stages.normalize_source(ctx, source)
        downloads = stages.download_source_images(ctx, source)  # URL-only sources: fetch the pixels
        extra = {"downloads": dg.MetadataValue.json(downloads)} if downloads else {}
        return dg.MaterializeResult(metadata={**counts_metadata(counts), **extra, **reuse_metadata(ctx),
                                              "path": dg.MetadataValue.path(str(ctx.layout.normalized(source)))},
                                    data_version=dg.DataVersion(ctx.output_version(stage_sync.normalized_unit(source))))

    return [published, raw, normalized]


def shards_version(ctx, mix: str, shards: list[int]) -> str:
    """A partition's data version: the sha256 of each of its tars, from their index parts."""
    import pyarrow.parquet as pq

    from imp_data.fingerprint import digest

    parts = [ctx.layout.index_parts(mix) / f"{s:06d}.parquet" for s in shards]
    return digest([pq.read_table(p, columns=["shard_sha256"]).column(0)[0].as_py() for p in parts])


def _charts_inline(markdown: str, mix_dir: Path) -> str:
    """Report markdown with its PNG charts inlined as data URIs, so the Dagster UI shows them."""
    for png in sorted((mix_dir / "charts").glob("*.png")):
        uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
        markdown = markdown.replace(f"(charts/{png.name})", f"({uri})")
    return markdown


def mix_assets(recipe: Recipe, mix: str) -> list[dg.AssetsDefinition]:
    spec = recipe.mixes[mix]
    partitions = shard_partitions(recipe, mix)
    group = f"mix_{mix}"

    def version(ctx, *what: str) -> dg.DataVersion:
        return dg.DataVersion(ctx.output_version(*(stage_sync.mix_unit(mix, w) for w in what)))

    @dg.asset(key=mix_key(mix, "selection"), deps=[normalized_key(s) for s in spec.sources], group_name=group,
              kinds={"parquet"}, code_version=asset_code_version(recipe, "select", mix),
              description="Drop rules (e.g. TextCaps) and seeded take-N per source")
    def selection(data_root: DataRoot) -> dg.MaterializeResult:
        ctx = data_root.context(recipe)
        summary = stages.select_mix(ctx, mix)
        rows = "\n".join(f"| {s} | {e['target']} | {e['available']} | "
                         f"{', '.join(f'{k} {v}' for k, v in e['dropped'].items()) or '-'} | {e['selected']} |"
                         for s, e in summary.items())
        table = "| source | target | available | dropped | selected |\n|---|---:|---:|---|---:|\n" + rows
        return dg.MaterializeResult(metadata={"selected": sum(e["selected"] for e in summary.values()),
                                              "per_source": dg.MetadataValue.md(table),
                                              "summary": dg.MetadataValue.json(summary), **reuse_metadata(ctx)},
                                    data_version=version(ctx, "selection"))

    @dg.asset(key=mix_key(mix, "renders"), deps=[selection, *(raw_key(s) for s in spec.sources)], group_name=group,
              kinds={"parquet"},
              code_version=asset_code_version(recipe, "dedup", mix),
              description="Every selected image decoded once: resize-then-pad JPEG + sha256 + phash; "
              "then dedup/decontamination removals")
    def renders(data_root: DataRoot) -> dg.MaterializeResult:
        ctx = data_root.context(recipe)
        table = stages.render_mix(ctx, mix)
        removals = stages.dedup_mix(ctx, mix)
        failed = table.filter(pl.col("reason").is_not_null())
        by_reason = dict(failed.group_by("reason").len().sort("reason").rows())
        removed = dict(removals.group_by("reason").len().sort("reason").rows()) if removals.height else {}
        return dg.MaterializeResult(metadata={"rendered": table.height - failed.height, "render_rejects": failed.height,
                                              "render_rejects_by_reason": dg.MetadataValue.json(by_reason),
                                              "removed": removals.height,
                                              "removed_by_reason": dg.MetadataValue.json(removed),
                                              **reuse_metadata(ctx)},
                                    data_version=version(ctx, "renders", "removals"))

    @dg.asset(key=mix_key(mix, "plan"), deps=[selection, renders, *(normalized_key(s) for s in spec.sources)],
              group_name=group, kinds={"parquet"}, code_version=asset_code_version(recipe, "plan", mix),
              description="Seeded global shuffle, keys and shard numbers, with every sample's text")
    def plan(data_root: DataRoot) -> dg.MaterializeResult:
        ctx = data_root.context(recipe)
        frame = stages.plan_stage(ctx, mix)
        return dg.MaterializeResult(metadata={"samples": frame.height, "shards": shard_count(frame),
                                              "path": dg.MetadataValue.path(str(ctx.layout.plan(mix))),
                                              **reuse_metadata(ctx)},
                                    data_version=version(ctx, "plan"))

    @dg.asset(key=mix_key(mix, "shards"), deps=[plan, renders], group_name=group, partitions_def=partitions,
              kinds={"webdataset"}, code_version=asset_code_version(recipe, "shards", mix),
              description="WebDataset tars (partition k holds shards s with s mod N == k)")
    def shards(context: dg.AssetExecutionContext, data_root: DataRoot) -> dg.MaterializeResult:
        ctx = data_root.context(recipe)
        if ctx.remote is not None:
            stage_sync.pull_plan_only(ctx, mix)
        n_shards = shard_count(pl.read_parquet(ctx.layout.plan(mix), columns=["shard"]))
        # a run may cover one partition or a range of them (a single-run backfill)
        mine = sorted(s for key in context.partition_keys for s in partition_shards(key, spec.partitions, n_shards))
        counts = write_mix_shards(ctx, mix, mine) if mine else {"written": 0, "skipped": 0}
        return dg.MaterializeResult(metadata={"shards": dg.MetadataValue.json(mine), **counts},
                                    data_version=dg.DataVersion(shards_version(ctx, mix, mine)))

    # everything finalizing reads, so a run orders it after all of them
    @dg.asset(key=mix_key(mix, "index"), group_name=group, kinds={"parquet"},
              deps=[shards, plan, selection, renders, *(normalized_key(s) for s in spec.sources),
                    *(raw_key(s) for s in spec.sources)],
              code_version=asset_code_version(recipe, "finalize", mix),
              description="index.parquet, index.wids.json, rejects.parquet and stats.json (reconciled)")
    def index(data_root: DataRoot) -> dg.MaterializeResult:
        ctx = data_root.context(recipe)
        stats = stages.finalize_mix(ctx, mix)
        t = stats["totals"]
        return dg.MaterializeResult(metadata={
            "samples": t["taken"], "shards": t["shards"], "rejected": t["rejected"], "dropped": t["dropped"],
            "reject_rate": t["reject_rate"], "path": dg.MetadataValue.path(str(ctx.layout.mix(mix))),
            "per_source": dg.MetadataValue.md(source_table(stats)), **reuse_metadata(ctx),
        }, data_version=version(ctx, "index"))

    @dg.asset(key=mix_key(mix, "report"), deps=[index], group_name=group, kinds={"markdown"},
              code_version=asset_code_version(recipe, "report", mix),
              description="The mix audit: per-source targets vs taken, rejects and drops by reason, charts")
    def report(data_root: DataRoot) -> dg.MaterializeResult:
        from imp_data.stats import load_stats

        ctx = data_root.context(recipe)
        mix_dir = ctx.layout.mix(mix)
        text = stages.report_mix(ctx, mix).read_text()
        stats = load_stats(mix_dir)
        return dg.MaterializeResult(metadata={
            "report": dg.MetadataValue.md(_charts_inline(text, mix_dir)),
            "per_source": dg.MetadataValue.md(source_table(stats)),
            "path": dg.MetadataValue.path(str(ctx.layout.report(mix))), **reuse_metadata(ctx),
        }, data_version=version(ctx, "report"))

    return [selection, renders, plan, shards, index, report]
