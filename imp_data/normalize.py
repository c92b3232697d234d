"""Normalise one source: adapter records -> validated canonical samples + rejects, as parquet.

The rules every source shares live here, once: native ids that repeat get `#2`, `#3` suffixes in file
order (LLaVA-665K keys several conversations by one COCO id), a record identical to an earlier one is a
`duplicate_record` reject, and every candidate is checked with the `Sample` schema's rule functions — a
failure becomes a reject whose reason names the broken rule. Counts reconcile exactly: read = normalized + rejected.
Output is written in bounded batches, so memory does not grow with the file.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from imp_data.io import atomic_path, dumps_canonical, write_json_atomic
from imp_data.schema import Reject, candidate_problems
from imp_data.sources.base import Candidate, Problem, Record

BATCH_ROWS = 20_000

TURN_TYPE = pa.struct([("from", pa.string()), ("value", pa.string())])
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
_ROW_SCHEMA = pa.schema([f for f in SAMPLE_SCHEMA if f.name not in ("text_chars", "text_words")])
REJECT_SCHEMA = pa.schema(
    [("source", pa.string()), ("source_id", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
     ("detail", pa.string())]
)

@dataclass
class SourceCounts:
    """What normalising one source did; `read == normalized + sum(rejected.values())` always."""

    source: str
    read: int = 0
    normalized: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    repeated_ids: int = 0  # samples whose id got a '#N' suffix
    with_image: int = 0
    text_only: int = 0

    def check(self) -> None:
        total = self.normalized + sum(self.rejected.values())
        assert self.read == total, f"{self.source}: read {self.read} != normalized + rejected {total}"


def _fingerprint(c: Candidate) -> bytes:
    """Identity of a record's content (image + turns), for exact-duplicate detection."""
    parts = [c.image or "\x00"]
    for t in c.conversations:
        parts.append(f"{t['from']}\x1f{t['value']}")
    return hashlib.blake2b("\x1e".join(parts).encode(), digest_size=16).digest()


def iter_outcomes(source: str, records: Iterable[Record]) -> Iterator[dict | Reject]:
    """Apply the shared rules to an adapter's records, in order: a row dict per valid sample, else a Reject.

    Validity is checked with the schema's own rule functions (`candidate_problems`), not by building a
    model per record: same rules, a fraction of the cost on millions of records.
    """
    seen: dict[str, list[bytes]] = {}  # native id -> fingerprints of its accepted records
    order = 0
    for rec in records:
        if isinstance(rec, Problem):
            yield Reject(source=source, source_id=rec.source_id, stage="normalize", reason=rec.reason,
                         detail=rec.detail)
            continue
        fingerprints = seen.get(rec.source_id, [])
        fp = _fingerprint(rec)
        if fp in fingerprints:
            yield Reject(source=source, source_id=rec.source_id, stage="normalize", reason="duplicate_record",
                         detail=f"{rec.where}: identical to an earlier record with id {rec.source_id!r}")
            continue
        n = len(fingerprints) + 1
        sample_id = f"{source}/{rec.source_id}" + (f"#{n}" if n > 1 else "")
        problems = candidate_problems(sample_id, source, rec.source_id, rec.image, rec.conversations)
        if problems:
            reason = problems[0][0]
            detail = "; ".join(message for _, message in problems)
            yield Reject(source=source, source_id=rec.source_id, stage="normalize", reason=reason,
                         detail=f"{rec.where}: {detail}" if rec.where else detail)
            continue
        seen.setdefault(rec.source_id, []).append(fp)
        yield candidate_row(sample_id, source, rec, order)
        order += 1


def candidate_row(sample_id: str, source: str, rec: Candidate, order: int) -> dict:
    """The normalized parquet row of a validated candidate (text statistics are added per batch)."""
    return {"id": sample_id, "source": source, "source_id": rec.source_id, "image": rec.image,
            "conversations": rec.conversations, "meta": dumps_canonical(rec.meta) if rec.meta else "{}",
            "n_turns": len(rec.conversations), "order": order}


TEXT = pl.col("conversations").list.eval(pl.element().struct.field("value"))


def add_text_stats(table: pa.Table) -> pa.Table:
    """text_chars / text_words columns, vectorised over a batch (cheaper than per record in Python)."""
    frame = pl.from_arrow(table).with_columns(
        (TEXT.list.eval(pl.element().str.len_chars()).list.sum() + pl.col("n_turns") - 1).cast(pl.Int64).alias("text_chars"),
        TEXT.list.eval(pl.element().str.count_matches(r"\S+")).list.sum().cast(pl.Int64).alias("text_words"),
    )
    return frame.select(SAMPLE_SCHEMA.names).to_arrow().cast(SAMPLE_SCHEMA)


def row_to_sample_dict(row: dict) -> dict:
    """A normalized parquet row back to the canonical sample dict (DESIGN §3)."""
    return {"id": row["id"], "source": row["source"], "source_id": row["source_id"], "image": row["image"],
            "conversations": [{"from": t["from"], "value": t["value"]} for t in row["conversations"]],
            "meta": json.loads(row["meta"]) if row["meta"] else {}}


class _BatchWriter:
    """Parquet writer that buffers rows and flushes every BATCH_ROWS (bounded memory)."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.schema = schema
        self.rows: list[dict] = []
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            if self.schema is SAMPLE_SCHEMA:
                table = pa.Table.from_pylist(self.rows, schema=_ROW_SCHEMA)
                self.writer.write_table(add_text_stats(table))
            else:
                self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


def normalize_records(source: str, records: Iterable[Record], out_path: Path, rejects_path: Path,
                      *, progress=None) -> SourceCounts:
    """Write `out_path` (samples) and `rejects_path` atomically; return the counts (also beside out_path)."""
    counts = SourceCounts(source=source)
    rejected: Counter[str] = Counter()
    with atomic_path(out_path) as tmp_out, atomic_path(rejects_path) as tmp_rej:
        samples, rejects = _BatchWriter(tmp_out, SAMPLE_SCHEMA), _BatchWriter(tmp_rej, REJECT_SCHEMA)
        try:
            for outcome in iter_outcomes(source, records):
                counts.read += 1
                if isinstance(outcome, Reject):
                    rejected[outcome.reason] += 1
                    rejects.add(outcome.model_dump())
                else:
                    counts.normalized += 1
                    counts.repeated_ids += len(outcome["id"]) > len(source) + 1 + len(outcome["source_id"])
                    if outcome["image"] is None:
                        counts.text_only += 1
                    else:
                        counts.with_image += 1
                    samples.add(outcome)
                if progress is not None:
                    progress.update(1)
        finally:
            samples.close()
            rejects.close()
    counts.rejected = dict(sorted(rejected.items()))
    counts.check()
    write_json_atomic(out_path.with_suffix(".counts.json"), asdict(counts))
    return counts


def read_counts(normalized_path: Path) -> SourceCounts:
    """The counts written beside a normalized parquet file."""
    data = json.loads(normalized_path.with_suffix(".counts.json").read_text())
    return SourceCounts(**data)
