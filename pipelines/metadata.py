"""What the Dagster UI shows about a step's outputs: the reuse report, standard table metadata
(`dagster/row_count`, `dagster/column_schema`), shard partitions' counts and a sample preview, and the report
with its charts inlined. Read from the files the stage wrote; nothing here computes what the CLI does not.
"""

import base64
from pathlib import Path

import dagster as dg

from imp_data.core.layout import MixDir


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


def shards_version(ctx, mix: str, shards: list[int]) -> str:
    """A partition's data version: the sha256 of each of its tars, from their index parts."""
    import pyarrow.parquet as pq

    from imp_data.core.fingerprint import digest

    parts = [ctx.layout.index_parts(mix) / f"{s:06d}.parquet" for s in shards]
    return digest([pq.read_table(p, columns=["shard_sha256"]).column(0)[0].as_py() for p in parts])


def charts_inline(markdown: str, mix_dir: Path) -> str:
    """Report markdown with its PNG charts inlined as data URIs, so the Dagster UI shows them."""
    for png in MixDir(mix_dir).chart_files():
        uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
        markdown = markdown.replace(f"(charts/{png.name})", f"({uri})")
    return markdown
