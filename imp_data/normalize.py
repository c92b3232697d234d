"""Normalise one source: adapter records -> validated canonical samples + rejects, as parquet.

The rules every source shares live here, once: native ids that repeat get `#2`, `#3` suffixes in file
order (LLaVA-665K keys several conversations by one COCO id), a record identical to an earlier one is a
`duplicate_record` reject, and every candidate is validated against `Sample` — a failure becomes a
reject whose reason is derived from the broken rule. Counts reconcile exactly: read = normalized + rejected.
Output is written in bounded batches, so memory does not grow with the file.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from imp_data.io import atomic_path, dumps_canonical, write_json_atomic
from imp_data.schema import Reject, Sample
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
REJECT_SCHEMA = pa.schema(
    [("source", pa.string()), ("source_id", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
     ("detail", pa.string())]
)

# Validation messages -> short reject reasons (first match wins); see schema.py for the rules.
_REASONS = [
    ("turn value is empty", "empty_value"),
    ("roles must alternate", "bad_roles"),
    ("ends with a human turn", "no_answer"),
    ("<image>", "image_token"),
    ("image path", "bad_image_path"),
    ("at least 2 items", "too_few_turns"),
    ("must be '", "bad_id"),
    ("Field required", "missing_field"),
    ("Input should be", "bad_type"),
]


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


def reject_reason(err: ValidationError) -> tuple[str, str]:
    """A short reason code and a one-line detail for a failed Sample validation."""
    messages = [f"{'.'.join(str(p) for p in e['loc']) or 'sample'}: {e['msg']}" for e in err.errors()]
    detail = "; ".join(messages)
    for needle, reason in _REASONS:
        if needle in detail:
            return reason, detail
    return "invalid_sample", detail


def _fingerprint(c: Candidate) -> str:
    return hashlib.blake2b(dumps_canonical([c.image, c.conversations]).encode(), digest_size=16).hexdigest()


def iter_outcomes(source: str, records: Iterable[Record]) -> Iterator[Sample | Reject]:
    """Apply the shared rules to an adapter's records, in order."""
    seen: dict[str, list[str]] = {}  # native id -> fingerprints of its accepted records
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
        try:
            sample = Sample(id=sample_id, source=source, source_id=rec.source_id, image=rec.image,
                            conversations=rec.conversations, meta=rec.meta)
        except ValidationError as err:
            reason, detail = reject_reason(err)
            yield Reject(source=source, source_id=rec.source_id, stage="normalize", reason=reason,
                         detail=f"{rec.where}: {detail}" if rec.where else detail)
            continue
        seen.setdefault(rec.source_id, []).append(fp)
        yield sample


def sample_row(sample: Sample, order: int) -> dict:
    turns = [{"from": t.from_, "value": t.value} for t in sample.conversations]
    text = "\n".join(t["value"] for t in turns)
    return {
        "id": sample.id, "source": sample.source, "source_id": sample.source_id, "image": sample.image,
        "conversations": turns, "meta": dumps_canonical(sample.meta), "n_turns": len(turns),
        "text_chars": len(text), "text_words": len(text.split()), "order": order,
    }


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
                    counts.repeated_ids += "#" in outcome.id[len(source) + 1 + len(outcome.source_id):]
                    if outcome.image is None:
                        counts.text_only += 1
                    else:
                        counts.with_image += 1
                    samples.add(sample_row(outcome, counts.read - 1))
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
