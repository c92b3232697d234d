"""Every table a build writes, defined once (docs/design.md §4).

Stages write and read these tables through the names here, so a column added to one is added for all
of them; `imp-data validate` and the JSON Schemas in schemas/ describe the records inside them.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

# One conversation turn, as LLaVA spells it: from (human|gpt) and value.
TURN_TYPE = pa.struct([("from", pa.string()), ("value", pa.string())])

# normalized/<source>.parquet: one row per normalized sample (imp_data.normalize).
SAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("source_id", pa.string()),
        ("image", pa.string()),
        ("conversations", pa.list_(TURN_TYPE)),
        ("meta", pa.string()),  # canonical JSON: meta differs per source
        ("n_turns", pa.int32()),
        ("text_chars", pa.int64()),
        ("text_words", pa.int64()),
        ("order", pa.int64()),  # position in the adapter's output, for traceability
    ]
)

# What an adapter's accepted rows carry before the text statistics are added.
SAMPLE_ROW_SCHEMA = pa.schema([f for f in SAMPLE_SCHEMA if f.name not in ("text_chars", "text_words")])

# rejects/<source>.parquet: what normalize could not accept, and why.
REJECT_SCHEMA = pa.schema(
    [("source", pa.string()), ("source_id", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
     ("detail", pa.string())]
)

# The normalized columns selection reads (imp_data.mix.select); selected.parquet and reserve.parquet hold them.
SELECT_COLUMNS = ["id", "source", "source_id", "image", "n_turns", "text_chars", "text_words", "order"]

# renders.parquet: one row per rendered sample image (imp_data.mix.render).
RENDER_COLUMNS = {
    "id": pl.String, "sha256": pl.String, "phash": pl.String, "orig_width": pl.Int32, "orig_height": pl.Int32,
    "width": pl.Int32, "height": pl.Int32, "cache": pl.String, "reason": pl.String, "detail": pl.String,
    "render_key": pl.String,
}

# drops.parquet, removals.parquet and the mix's rejects.parquet: a sample that left the mix, where and why.
DROP_COLUMNS = {"id": pl.String, "source": pl.String, "source_id": pl.String, "stage": pl.String,
                "reason": pl.String, "detail": pl.String, "kept_id": pl.String, "distance": pl.Int32}

# contamination.parquet: training samples whose image matches a benchmark image (imp_data.mix.dedup).
CONTAMINATION_COLUMNS = {"id": pl.String, "source": pl.String, "benchmark": pl.String, "image_name": pl.String,
                         "distance": pl.Int32, "match": pl.String}

# plan.parquet: the mix in shard order, with everything a shard writer needs (imp_data.mix.plan).
PLAN_COLUMNS = ["key", "position", "shard", "id", "source", "source_id", "image", "conversations", "meta", "n_turns",
                "text_chars", "text_words", "order", "sha256", "phash", "orig_width", "orig_height", "width", "height",
                "cache"]

# index.parquet (and each shard's index part): where every member lies in the tars, with its hashes.
INDEX_SCHEMA = pa.schema(
    [
        ("key", pa.string()), ("position", pa.int64()), ("shard", pa.int32()), ("shard_name", pa.string()),
        ("id", pa.string()), ("source", pa.string()), ("source_id", pa.string()),
        ("sha256", pa.string()), ("phash", pa.string()),
        ("orig_width", pa.int32()), ("orig_height", pa.int32()), ("width", pa.int32()), ("height", pa.int32()),
        ("n_turns", pa.int32()), ("text_chars", pa.int64()), ("text_words", pa.int64()),
        ("json_offset", pa.int64()), ("json_size", pa.int64()), ("jpg_offset", pa.int64()), ("jpg_size", pa.int64()),
        ("json_sha256", pa.string()), ("jpg_sha256", pa.string()),
        ("shard_size", pa.int64()), ("shard_sha256", pa.string()), ("shard_fingerprint", pa.string()),
    ]
)

# raw/<source>/downloads.parquet: one row per image URL a source downloads (imp_data.fetch.http).
DOWNLOAD_SCHEMA = pa.schema([
    ("url", pa.string()), ("status", pa.string()), ("http_status", pa.int32()), ("attempts", pa.int32()),
    ("bytes", pa.int64()), ("sha256", pa.string()), ("elapsed_s", pa.float64()), ("path", pa.string()),
    ("content_type", pa.string()), ("final_url", pa.string()), ("detail", pa.string()),
])
