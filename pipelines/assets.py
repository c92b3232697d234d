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
from imp_data.audit.report import source_table
from imp_data.core.layout import MixDir, mix_unit, normalized_unit
from imp_data.core.recipe import Recipe
from imp_data.identities import published_identity
from imp_data.mix.plan import shard_count
from imp_data.shards.assemble import write_mix_shards
from imp_data.stage_inputs import asset_code_version
from imp_data.storage import sync as stage_sync
from pipelines.resources import DataRoot, FetchSettings

FETCH_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
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


def reuse_metadata(ctx) -> dict:
    """What this step redid and reused (the CLI prints the same lines)."""
    return {"reuse": dg.MetadataValue.json(ctx.reuse),
            "redone": sum(r["redone"] for r in ctx.reuse), "reused": sum(r["reused"] for r in ctx.reuse)}


def counts_metadata(counts) -> dict:
    return {"read": counts.read, "normalized": counts.normalized, "rejected": sum(counts.rejected.values()),
            "rejected_by_reason": dg.MetadataValue.json(counts.rejected), "repeated_ids": counts.repeated_ids}


def table_metadata(path: Path) -> dict:
    """Dagster's standard table metadata (`dagster/row_count`, `dagster/column_schema`) read from the
    parquet footer the step wrote, so the catalog shows size and columns without opening the file."""
    import pyarrow.parquet as pq

    if not path.is_file():  # nothing written (a URL root's reused step): no numbers rather than stale ones
        return {}
    footer = pq.ParquetFile(path)
    columns = [dg.TableColumn(f.name, str(f.type)) for f in footer.schema_arrow]
    return {"dagster/row_count": footer.metadata.num_rows,
            "dagster/column_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns))}


def _md_text(text: str, limit: int = 160) -> str:
    """One line of sample text, safe inside Markdown (`<image>` would otherwise vanish as an HTML tag)."""
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[:limit - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def samples_preview(shard: Path, rows: list[dict], n: int = 3) -> str:
    """The first `n` samples of a shard as Markdown: id, source, a thumbnail (a data URI, so the UI shows
    it with nothing to serve) and the first turns, read from the tar at the offsets the index recorded."""
    import io
    import json

    from PIL import Image

    parts = []
    with shard.open("rb") as tar:
        for row in rows[:n]:
            tar.seek(row["json_offset"])
            sample = json.loads(tar.read(row["json_size"]))
            lines = [f"**`{row['id']}`** ({row['source']}, key {row['key']})", ""]
            if row.get("jpg_size"):
                tar.seek(row["jpg_offset"])
                image = Image.open(io.BytesIO(tar.read(row["jpg_size"])))
                image.thumbnail((128, 128))
                buf = io.BytesIO()
                image.convert("RGB").save(buf, format="JPEG", quality=85)
                lines += [f"![{row['id']}](data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()})", ""]
            else:
                lines += ["_text-only sample_", ""]
            lines += [f"> **{t['from']}:** {_md_text(t['value'])}  " for t in sample["conversations"][:2]]
            parts.append("\n".join(lines))
    return "\n\n---\n\n".join(parts)


def shards_metadata(ctx, mix: str, shards: list[int], n_partitions: int) -> dict:
    """Samples and bytes of the shards this materialization covers, per partition (partition k holds the
    shards s with s mod N == k, so its number alone says nothing about size), and a preview."""
    import pyarrow.parquet as pq

    if not shards:
        return {"samples": 0, "bytes": 0}
    rows = {s: pq.read_table(ctx.layout.index_parts(mix) / f"{s:06d}.parquet",
                             columns=["id", "source", "key", "shard_name", "shard_size", "json_offset", "json_size",
                                      "jpg_offset", "jpg_size"]).to_pylist() for s in shards}
    per: dict[str, list[int]] = {}
    for s in shards:
        entry = per.setdefault(f"{s % n_partitions:04d}", [0, 0, 0])
        entry[0], entry[1], entry[2] = entry[0] + 1, entry[1] + len(rows[s]), entry[2] + rows[s][0]["shard_size"]
    table = "| partition | shards | samples | bytes |\n|---|---:|---:|---:|\n" + "\n".join(
        f"| {k} | {a} | {b:,} | {c:,} |" for k, (a, b, c) in sorted(per.items()))
    first = rows[shards[0]]
    return {"samples": sum(e[1] for e in per.values()), "bytes": sum(e[2] for e in per.values()),
            "by_partition": dg.MetadataValue.md(table),
            "preview": dg.MetadataValue.md(samples_preview(ctx.layout.shards_dir(mix) / first[0]["shard_name"], first))}


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
              metadata={"location": spec.location, "license": spec.license or "see docs/sources.md"})
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
        root = stages.fetch_source(ctx, source)  # where `raw` put the files (verified, not fetched again)
        counts = stages.normalize_source(ctx, source, root)
        return dg.MaterializeResult(metadata={**counts_metadata(counts), **reuse_metadata(ctx),
                                              **table_metadata(ctx.layout.normalized(source)),
                                              "path": dg.MetadataValue.path(str(ctx.layout.normalized(source)))},
                                    data_version=dg.DataVersion(ctx.output_version(normalized_unit(source))))

    if not spec.download_images:
        return [published, raw, normalized]

    @dg.asset(key=downloads_key(source), deps=[normalized], group_name="sources", retry_policy=FETCH_RETRY,
              pool=FETCH_POOL, kinds={"python"}, code_version=asset_code_version(recipe, "download", source),
              description=f"`{source}`'s images fetched from their URLs into raw/{source}/ (download_images: true)")
    def downloads(data_root: DataRoot, fetch: FetchSettings) -> dg.MaterializeResult:
        ctx = data_root.context(recipe, fetch)
        summary = stages.download_source_images(ctx, source)
        return dg.MaterializeResult(metadata={"downloads": dg.MetadataValue.json(summary)})

    return [published, raw, normalized, downloads]


def shards_version(ctx, mix: str, shards: list[int]) -> str:
    """A partition's data version: the sha256 of each of its tars, from their index parts."""
    import pyarrow.parquet as pq

    from imp_data.core.fingerprint import digest

    parts = [ctx.layout.index_parts(mix) / f"{s:06d}.parquet" for s in shards]
    return digest([pq.read_table(p, columns=["shard_sha256"]).column(0)[0].as_py() for p in parts])


def _charts_inline(markdown: str, mix_dir: Path) -> str:
    """Report markdown with its PNG charts inlined as data URIs, so the Dagster UI shows them."""
    for png in MixDir(mix_dir).chart_files():
        uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
        markdown = markdown.replace(f"(charts/{png.name})", f"({uri})")
    return markdown


def mix_assets(recipe: Recipe, mix: str) -> list[dg.AssetsDefinition]:
    spec = recipe.mixes[mix]
    partitions = shard_partitions(recipe, mix)
    group = f"mix_{mix}"

    def version(ctx, *what: str) -> dg.DataVersion:
        return dg.DataVersion(ctx.output_version(*(mix_unit(mix, w) for w in what)))

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
                                              "summary": dg.MetadataValue.json(summary), **reuse_metadata(ctx),
                                              **table_metadata(ctx.layout.selected(mix))},
                                    data_version=version(ctx, "selection"))

    @dg.asset(key=mix_key(mix, "renders"), deps=[selection, *image_keys(recipe, spec.sources)], group_name=group,
              kinds={"parquet"}, code_version=asset_code_version(recipe, "render", mix),
              description="Every selected image decoded once: resize-then-pad JPEG + sha256 + phash; samples "
              "lost to bad images are replaced from the seeded reserve")
    def renders(data_root: DataRoot) -> dg.MaterializeResult:
        ctx = data_root.context(recipe)
        table = stages.render_mix(ctx, mix)
        failed = table.filter(pl.col("reason").is_not_null())
        by_reason = dict(failed.group_by("reason").len().sort("reason").rows())
        return dg.MaterializeResult(metadata={"rendered": table.height - failed.height, "render_rejects": failed.height,
                                              "render_rejects_by_reason": dg.MetadataValue.json(by_reason),
                                              **reuse_metadata(ctx), **table_metadata(ctx.layout.renders(mix))},
                                    data_version=version(ctx, "renders"))

    @dg.asset(key=mix_key(mix, "removals"), deps=[renders], group_name=group, kinds={"parquet"},
              code_version=asset_code_version(recipe, "dedup", mix),
              description="Duplicate and benchmark-contamination removals over the rendered images' hashes")
    def removals(data_root: DataRoot) -> dg.MaterializeResult:
        ctx = data_root.context(recipe)
        table = stages.dedup_mix(ctx, mix)
        removed = dict(table.group_by("reason").len().sort("reason").rows()) if table.height else {}
        return dg.MaterializeResult(metadata={"removed": table.height,
                                              "removed_by_reason": dg.MetadataValue.json(removed),
                                              **reuse_metadata(ctx), **table_metadata(ctx.layout.removals(mix))},
                                    data_version=version(ctx, "removals"))

    @dg.asset(key=mix_key(mix, "plan"), deps=[selection, renders, removals, *(normalized_key(s) for s in spec.sources)],
              group_name=group, kinds={"parquet"}, code_version=asset_code_version(recipe, "plan", mix),
              description="Seeded global shuffle, keys and shard numbers, with every sample's text")
    def plan(data_root: DataRoot) -> dg.MaterializeResult:
        ctx = data_root.context(recipe)
        frame = stages.plan_stage(ctx, mix)
        return dg.MaterializeResult(metadata={"samples": frame.height, "shards": shard_count(frame),
                                              "path": dg.MetadataValue.path(str(ctx.layout.plan(mix))),
                                              **reuse_metadata(ctx), **table_metadata(ctx.layout.plan(mix))},
                                    data_version=version(ctx, "plan"))

    # single_run: "materialize all partitions" in the UI is one run over the range, not a run per partition
    @dg.asset(key=mix_key(mix, "shards"), deps=[plan, renders], group_name=group, partitions_def=partitions,
              backfill_policy=dg.BackfillPolicy.single_run(),
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

    # everything finalizing reads, so a run orders it after all of them
    @dg.asset(key=mix_key(mix, "index"), group_name=group, kinds={"parquet"},
              deps=[shards, plan, selection, renders, removals, *(normalized_key(s) for s in spec.sources),
                    *(raw_key(s) for s in spec.sources), *(downloads_key(s) for s in spec.sources
                                                          if recipe.sources[s].download_images)],
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
            **table_metadata(ctx.layout.index(mix)),
        }, data_version=version(ctx, "index"))

    @dg.asset(key=mix_key(mix, "report"), deps=[index], group_name=group, kinds={"markdown"},
              code_version=asset_code_version(recipe, "report", mix),
              description="The mix audit: per-source targets vs taken, rejects and drops by reason, charts")
    def report(data_root: DataRoot) -> dg.MaterializeResult:
        from imp_data.audit.stats import load_stats

        ctx = data_root.context(recipe)
        mix_dir = ctx.layout.mix(mix)
        text = stages.report_mix(ctx, mix).read_text()
        stats = load_stats(mix_dir)
        return dg.MaterializeResult(metadata={
            "report": dg.MetadataValue.md(_charts_inline(text, mix_dir)),
            "per_source": dg.MetadataValue.md(source_table(stats)),
            "path": dg.MetadataValue.path(str(ctx.layout.report(mix))), **reuse_metadata(ctx),
        }, data_version=version(ctx, "report"))

    return [selection, renders, removals, plan, shards, index, report]
