"""Normalise one source: adapter records -> validated canonical samples + rejects, as parquet.

The rules every source shares live here, once: native ids that repeat get `#2`, `#3` suffixes in file
order (LLaVA-665K keys several conversations by one COCO id), a record identical to an earlier one is a
`duplicate_record` reject, and every candidate is checked with the `Sample` schema's rule functions — a
failure becomes a reject whose reason names the broken rule. Counts reconcile exactly: read = normalized + rejected.

Ids are unique within a source even though a native id may itself end in '#N': the N-th accepted record
of a native id gets '#N', unless that id is already taken (by a native id, or a suffix given earlier), in
which case it gets the next free N; a native id whose plain form is already taken gets the first free
'#N' itself. So `x`, `x`, `x#2` become `x`, `x#2`, `x#2#2`, and data without such collisions keeps the
plain `#N` it always had.

One bad record costs that record: meta nested deeper than `limits.max_json_depth` (`record_too_deep`) or
not plain JSON (`non_finite_number` for NaN/Infinity, `bad_type`), text no UTF-8 writer accepts
(`bad_unicode`, a lone surrogate) or anything else a batch's conversion trips over is found record by
record and becomes that record's reject (`bad_record` when no rule names it); the rest of the batch goes
on. The happy path pays for none of it: the batch conversion is the check.

Design choice: records go BATCH_ROWS at a time into Arrow columns, and a vectorised screen (`batch_screen`)
marks every row that *might* break a rule — a superset, so the rules keep one definition: only marked
(rare) rows go through `candidate_problems`, which decides and names the reason. Ids and duplicates stay a
loop in file order, but only over rows whose id was seen before, repeats in the batch or holds a '#'. A
batch that is not plain `str` ids and lists of `{"from": str, "value": str}` dicts is checked record by
record. The output is the same either way, byte for byte; memory is bounded by the batch, never by the file.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import compress, islice
from operator import itemgetter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from imp_data.batch_screen import (
    Columns,
    column_fingerprints,
    columns,
    deep_metas,
    fingerprint_hashes,
    fingerprint_text,
    isolate,
    meta_json,
    safe_rejects,
    screen,
)
from imp_data.core.io import atomic_path, write_json_atomic
from imp_data.core.schema import Reject, candidate_problems
from imp_data.core.tables import REJECT_SCHEMA, SAMPLE_ROW_SCHEMA, SAMPLE_SCHEMA
from imp_data.sources.base import Candidate, Problem, Record

BATCH_ROWS = 20_000


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


# ---------------------------------------------------------------------------------------------------------
# The id and duplicate decisions, in file order.

@dataclass
class _Decided:
    """A batch's outcome: accepted candidates (indices, in order), their N where '#N' applies, and the
    rejects as (position in the batch, Reject). `batch` is the batch as decided (a record whose conversion
    failed replaced by its Problem)."""

    batch: list[Record]
    rows: list[int] = field(default_factory=list)
    repeats: dict[int, int] = field(default_factory=dict)
    rejects: list[tuple[int, Reject]] = field(default_factory=list)

    def sample_id(self, source: str, sid: str, row: int) -> str:
        n = self.repeats.get(row)
        return f"{source}/{sid}" if n is None else f"{source}/{sid}#{n}"


def _suffix(sid: str, n: int, taken: set[str]) -> int | None:
    """The '#N' of the n-th accepted record of native id `sid` (None: the plain id), never one in `taken`."""
    if n == 1 and not ("#" in sid and sid in taken):
        return None
    k = max(n, 2)
    while f"{sid}#{k}" in taken:
        k += 1
    return k


def _decide(source: str, batch: list[Record], cands: list[Candidate], sids: list, fps: list, marked, once,
            seen: dict, taken: set[str]) -> _Decided:
    """Ids with '#N', duplicates, and the rules of marked rows (`marked is True`: all; `once`: ids that
    occur once in the batch). `seen`: native id -> fingerprint (or list of them) of its accepted records;
    `taken`: the ids (less the source) that may collide, i.e. every suffixed one and every plain one
    holding '#' (the screen marks those rows).

    An unmarked row with a new id that occurs once in the batch is simply accepted; the other rows are
    decided one by one, in file order.
    """
    out, positions = _Decided(batch), None
    if len(batch) > len(cands):
        positions = [k for k, r in enumerate(batch) if not isinstance(r, Problem)]
        out.rejects = [(k, Reject(source=source, source_id=r.source_id, stage="normalize", reason=r.reason,
                                  detail=r.detail)) for k, r in enumerate(batch) if isinstance(r, Problem)]
    if marked is True:
        simple, rows = [False] * len(cands), range(len(cands))
    else:
        known = np.fromiter(map(seen.__contains__, sids), bool, len(sids))
        simple, rows = (~known & ~marked & once).tolist(), np.flatnonzero(known | marked | ~once).tolist()
        marked = marked.tolist()
    accepted = []
    for j in rows:
        rec, sid, fp = cands[j], sids[j], fps[j]
        k = j if positions is None else positions[j]
        prev = seen.get(sid)
        if prev is None:
            n = 1
        elif prev.__class__ is int:
            n = 0 if fp == prev else 2
        else:
            n = 0 if fp in prev else len(prev) + 1
        if n == 0:
            out.rejects.append((k, Reject(source=source, source_id=sid, stage="normalize", reason="duplicate_record",
                                          detail=f"{rec.where}: identical to an earlier record with id {sid!r}")))
            continue
        suffix = _suffix(sid, n, taken) if sid.__class__ is str else None
        if marked is True or marked[j]:
            sample_id = f"{source}/{sid}" if suffix is None else f"{source}/{sid}#{suffix}"
            problems = candidate_problems(sample_id, source, sid, rec.image, rec.conversations)
            if problems:
                detail = "; ".join(message for _, message in problems)
                out.rejects.append((k, Reject(source=source, source_id=sid, stage="normalize", reason=problems[0][0],
                                              detail=f"{rec.where}: {detail}" if rec.where else detail)))
                continue
        # fp is not None here: a record whose turns cannot be spelled always breaks a rule
        if prev is None:
            seen[sid] = fp
        elif prev.__class__ is int:
            seen[sid] = [prev, fp]
        else:
            prev.append(fp)
        accepted.append(j)
        if suffix is not None:
            out.repeats[j] = suffix
            taken.add(f"{sid}#{suffix}")
        elif "#" in sid:
            taken.add(sid)
    seen.update(zip(compress(sids, simple), compress(fps, simple)))
    out.rows = list(compress(range(len(cands)), simple))
    if accepted:
        out.rows = sorted(out.rows + accepted)
    out.rejects.sort(key=itemgetter(0))
    return out


class _Normalizer:
    """The shared rules over a stream of batches; keeps the '#N'/duplicate state and the row order."""

    def __init__(self, source: str):
        self.source, self.seen, self.taken, self.order = source, {}, set(), 0

    def batch(self, batch: list[Record]) -> tuple[_Decided, pa.Table]:
        """Decide a batch; return the decisions and the accepted rows as a `SAMPLE_ROW_SCHEMA` table.

        Everything that can fail on one record's content (meta to JSON, text to Arrow) happens before
        any decision changes the id state, so a failed batch is simply redone with that record's Problem.
        """
        try:
            prepared = self._prepare(batch)
        except Exception:  # noqa: BLE001 - isolate names the records at fault, or re-raises
            batch = isolate(batch, self._prepare)
            prepared = self._prepare(batch)
        cands, sids, metas, cols, fps, marked, once = prepared
        source = self.source
        decided = _decide(source, batch, cands, sids, fps, marked, once, self.seen, self.taken)
        if cols is None:  # record by record, as the rules are written
            table = pa.Table.from_pylist([candidate_row(decided.sample_id(source, sids[j], j), source, cands[j],
                                                        self.order + i, metas[j].as_py())
                                          for i, j in enumerate(decided.rows)], schema=SAMPLE_ROW_SCHEMA)
        else:
            table = self._table(decided, cands, cols, metas)
        self.order += table.num_rows
        return decided, table

    @staticmethod
    def _prepare(batch: list[Record]) -> tuple:
        """The batch's candidates as Arrow values, fingerprints and screen (no state is touched)."""
        cands = [r for r in batch if not isinstance(r, Problem)]
        sids = [c.source_id for c in cands]
        metas = pa.array([meta_json(c.meta) for c in cands], pa.string())
        if deep_metas(metas, cands):
            raise RecursionError("meta nested deeper than the cap")  # found and named by record_fault
        cols = columns(cands, sids) if cands else None
        if cols is None:
            pa.array([s if s.__class__ is str else None for s in sids], pa.string())  # encodable ids
            fps = fingerprint_hashes(pa.array([fingerprint_text(c) for c in cands], pa.string()))
            return cands, sids, metas, None, fps, True, None
        once = pl.from_arrow(cols.source_id).is_unique().to_numpy()
        return cands, sids, metas, cols, column_fingerprints(cols), screen(cols), once

    def _table(self, decided: _Decided, cands: list[Candidate], cols: Columns, metas: pa.Array) -> pa.Table:
        rows, k = decided.rows, len(decided.rows)
        idx = None if k == len(cands) else pa.array(rows, pa.int64())
        pick = (lambda a: a) if idx is None else (lambda a: a.take(idx))
        suffix = [f"#{decided.repeats[j]}" if j in decided.repeats else "" for j in rows] if decided.repeats \
            else [""] * k
        source_id = pick(cols.source_id)
        return pa.Table.from_arrays([
            pc.binary_join_element_wise(self.source + "/", source_id, pa.array(suffix, pa.string()), ""),
            pa.array([self.source] * k, pa.string()), source_id, pick(cols.image), pick(cols.conversations),
            pick(metas), pa.array(cols.n_turns[rows] if k < len(cands) else cols.n_turns, pa.int32()),
            pa.array(np.arange(self.order, self.order + k, dtype=np.int64)),
        ], schema=SAMPLE_ROW_SCHEMA)


def _batches(records: Iterable[Record]) -> Iterator[list[Record]]:
    it = iter(records)
    while batch := list(islice(it, BATCH_ROWS)):
        yield batch


def iter_outcomes(source: str, records: Iterable[Record]) -> Iterator[dict | Reject]:
    """Apply the shared rules to an adapter's records, in order: a row dict per valid sample, else a Reject.

    Validity is checked with the schema's own rule functions (`candidate_problems`), not by building a
    model per record: same rules, a fraction of the cost on millions of records.
    """
    norm = _Normalizer(source)
    for batch in _batches(records):
        order, (decided, table) = norm.order, norm.batch(batch)
        cands = [(k, r) for k, r in enumerate(decided.batch) if not isinstance(r, Problem)]
        outcomes: list[tuple[int, dict | Reject]] = list(decided.rejects)
        for i, j in enumerate(decided.rows):
            k, rec = cands[j]
            outcomes.append((k, candidate_row(decided.sample_id(source, rec.source_id, j), source, rec, order + i,
                                              table["meta"][i].as_py())))
        yield from (o for _, o in sorted(outcomes, key=itemgetter(0)))


def candidate_row(sample_id: str, source: str, rec: Candidate, order: int, meta: str | None = None) -> dict:
    """The normalized parquet row of a validated candidate (text statistics are added per batch);
    `meta`: its meta as JSON when already spelled."""
    return {"id": sample_id, "source": source, "source_id": rec.source_id, "image": rec.image,
            "conversations": rec.conversations, "meta": meta_json(rec.meta) if meta is None else meta,
            "n_turns": len(rec.conversations), "order": order}


TEXT = pl.col("conversations").list.eval(pl.element().struct.field("value"))


def add_text_stats(table: pa.Table) -> pa.Table:
    """text_chars / text_words columns, vectorised over a batch (cheaper than per record in Python)."""
    frame = pl.from_arrow(table).with_columns(
        ((TEXT.list.eval(pl.element().str.len_chars()).list.sum() + pl.col("n_turns") - 1)
         .cast(pl.Int64).alias("text_chars")),
        TEXT.list.eval(pl.element().str.count_matches(r"\S+")).list.sum().cast(pl.Int64).alias("text_words"),
    )
    return frame.select(SAMPLE_SCHEMA.names).to_arrow().cast(SAMPLE_SCHEMA)


def row_to_sample_dict(row: dict) -> dict:
    """A normalized parquet row back to the canonical sample dict (docs/design.md §3)."""
    return {"id": row["id"], "source": row["source"], "source_id": row["source_id"], "image": row["image"],
            "conversations": [{"from": t["from"], "value": t["value"]} for t in row["conversations"]],
            "meta": json.loads(row["meta"]) if row["meta"] else {}}


class _TableWriter:
    """Parquet writer whose row groups hold exactly BATCH_ROWS rows, however the added tables are cut."""

    def __init__(self, path: Path, schema: pa.Schema, finish=lambda table: table):
        self.parts: list[pa.Table] = []
        self.rows = 0
        self.finish = finish
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self.parts.append(table)
            self.rows += table.num_rows
        while self.rows >= BATCH_ROWS:
            self._write(BATCH_ROWS)

    def _write(self, n: int) -> None:
        table = pa.concat_tables(self.parts)
        rest = table.slice(n)
        self.writer.write_table(self.finish(table.slice(0, n).combine_chunks()))
        self.parts, self.rows = ([rest] if rest.num_rows else []), self.rows - n

    def close(self) -> None:
        if self.rows:
            self._write(self.rows)
        self.writer.close()


@contextmanager
def _young_collections() -> Iterator[None]:
    """Pause automatic garbage collection (the caller collects the young generation every few batches).

    A batch keeps ~10^5 containers alive, which the automatic collector re-scans many times per batch: a
    fifth of the stage. Normalising makes no reference cycles; the periodic collection bounds any an
    adapter might leave.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def normalize_records(source: str, records: Iterable[Record], out_path: Path, rejects_path: Path,
                      *, progress=None) -> SourceCounts:
    """Write `out_path` (samples) and `rejects_path` atomically; return the counts (also beside out_path)."""
    counts = SourceCounts(source=source)
    rejected: Counter[str] = Counter()
    norm = _Normalizer(source)
    with atomic_path(out_path) as tmp_out, atomic_path(rejects_path) as tmp_rej, _young_collections():
        samples, rejects = _TableWriter(tmp_out, SAMPLE_SCHEMA, add_text_stats), _TableWriter(tmp_rej, REJECT_SCHEMA)
        try:
            for n, batch in enumerate(_batches(records), 1):
                decided, table = norm.batch(batch)
                counts.read += len(batch)
                rejected.update(reject.reason for _, reject in decided.rejects)
                rejects.add(safe_rejects([r.model_dump() for _, r in decided.rejects], REJECT_SCHEMA))
                counts.normalized += table.num_rows
                counts.repeated_ids += len(decided.repeats)
                counts.text_only += table.column("image").null_count
                samples.add(table)
                if progress is not None:
                    progress.update(len(batch))
                if n % 10 == 0:
                    gc.collect(0)
        finally:
            samples.close()
            rejects.close()
    counts.with_image = counts.normalized - counts.text_only
    counts.rejected = dict(sorted(rejected.items()))
    counts.check()
    write_json_atomic(out_path.with_suffix(".counts.json"), asdict(counts))
    return counts


def read_counts(normalized_path: Path) -> SourceCounts:
    """The counts written beside a normalized parquet file."""
    data = json.loads(normalized_path.with_suffix(".counts.json").read_text())
    return SourceCounts(**data)
