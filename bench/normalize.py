"""Normalise-stage benchmark: the old per-record path against the batched one, side by side, same records.

The reference below is the per-record implementation the batched `imp_data.normalize` replaced (blake2b
fingerprints, `candidate_problems` on every record, one row dict per sample, `Table.from_pylist`) and
the per-element JSON reader (`raw_decode` + `skip_ws` per element, the old `llava_record`). Both write
parquet; the script checks that the two outputs are byte-identical, then prints records/s and the ratio:

  1. normalise: the same in-memory adapter records -> normalized + rejects parquet
  2. read + normalise: LLaVA JSON file -> parquet (the whole stage)

Records: the first --records of /tmp/imp-scale/synth/llava_665k (bench/scale.py writes it), else
generated the same way (bench/synth_sources.py).

    python bench/normalize.py [--records 200000] [--file PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from imp_data.core.io import dumps_canonical  # noqa: E402
from imp_data.core.schema import Reject, candidate_problems  # noqa: E402
from imp_data.normalize import (  # noqa: E402
    BATCH_ROWS,
    REJECT_SCHEMA,
    SAMPLE_ROW_SCHEMA,
    SAMPLE_SCHEMA,
    add_text_stats,
    normalize_records,
)
from imp_data.sources.base import Candidate, Problem, Record, native_id  # noqa: E402
from imp_data.sources.jsonstream import _Buffer, iter_json_array  # noqa: E402
from imp_data.sources.llava_format import KNOWN_KEYS, read_llava_files  # noqa: E402

SYNTH = Path("/tmp/imp-scale/synth/llava_665k/llava_v1_5_mix665k.json")

# ---------------------------------------------------------------------------------------------------------
# Reference: the per-record path as it was


def ref_iter_outcomes(source: str, records: Iterable[Record]) -> Iterator[dict | Reject]:
    seen: dict[str, list[bytes]] = {}
    order = 0
    for rec in records:
        if isinstance(rec, Problem):
            yield Reject(source=source, source_id=rec.source_id, stage="normalize", reason=rec.reason,
                         detail=rec.detail)
            continue
        fingerprints = seen.get(rec.source_id, [])
        parts = [rec.image or "\x00"] + [f"{t['from']}\x1f{t['value']}" for t in rec.conversations]
        fp = hashlib.blake2b("\x1e".join(parts).encode(), digest_size=16).digest()
        if fp in fingerprints:
            yield Reject(source=source, source_id=rec.source_id, stage="normalize", reason="duplicate_record",
                         detail=f"{rec.where}: identical to an earlier record with id {rec.source_id!r}")
            continue
        n = len(fingerprints) + 1
        sample_id = f"{source}/{rec.source_id}" + (f"#{n}" if n > 1 else "")
        problems = candidate_problems(sample_id, source, rec.source_id, rec.image, rec.conversations)
        if problems:
            detail = "; ".join(message for _, message in problems)
            yield Reject(source=source, source_id=rec.source_id, stage="normalize", reason=problems[0][0],
                         detail=f"{rec.where}: {detail}" if rec.where else detail)
            continue
        seen.setdefault(rec.source_id, []).append(fp)
        yield {"id": sample_id, "source": source, "source_id": rec.source_id, "image": rec.image,
               "conversations": rec.conversations, "meta": dumps_canonical(rec.meta) if rec.meta else "{}",
               "n_turns": len(rec.conversations), "order": order}
        order += 1


def ref_normalize(source: str, records: Iterable[Record], out: Path, rej: Path) -> int:
    rows, rejects, read = [], [], 0
    samples_w = pq.ParquetWriter(out, SAMPLE_SCHEMA, compression="zstd")
    rejects_w = pq.ParquetWriter(rej, REJECT_SCHEMA, compression="zstd")
    for outcome in ref_iter_outcomes(source, records):
        read += 1
        if isinstance(outcome, Reject):
            rejects.append(outcome.model_dump())
            if len(rejects) >= BATCH_ROWS:
                rejects_w.write_table(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA))
                rejects = []
        else:
            rows.append(outcome)
            if len(rows) >= BATCH_ROWS:
                samples_w.write_table(add_text_stats(pa.Table.from_pylist(rows, schema=SAMPLE_ROW_SCHEMA)))
                rows = []
    if rows:
        samples_w.write_table(add_text_stats(pa.Table.from_pylist(rows, schema=SAMPLE_ROW_SCHEMA)))
    if rejects:
        rejects_w.write_table(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA))
    samples_w.close()
    rejects_w.close()
    return read


def ref_llava_record(rec, where: str, fallback_id: str) -> Record:
    if not isinstance(rec, dict):
        return Problem(fallback_id, "bad_type", f"{where}: record is a {type(rec).__name__}, not an object")
    sid = native_id(rec.get("id"))
    if sid is None:
        return Problem(fallback_id, "missing_field", f"{where}: no usable 'id'")
    conv = rec.get("conversations")
    if conv is None:
        return Problem(sid, "missing_field", f"{where}: no 'conversations'")
    image = rec.get("image")
    if image is not None and not isinstance(image, str):
        return Problem(sid, "bad_type", f"{where}: 'image' must be a string")
    meta = {k: v for k, v in rec.items() if k not in KNOWN_KEYS}
    return Candidate(source_id=sid, image=image, conversations=conv, meta=meta, where=where)


def ref_read_llava(path: Path) -> Iterator[Record]:
    """The per-element reader (skip_ws / raw_decode / skip_ws per element) and the old llava_record."""
    buf = _Buffer(path)
    try:
        buf.skip_ws()
        buf.pos += 1
        n = 0
        while buf.skip_ws() != "]":
            rec = buf.decode_value(f"record {n}")
            if buf.skip_ws() == ",":
                buf.pos += 1
            yield ref_llava_record(rec, f"{path.name} record {n}", f"@{path.name}:{n}")
            n += 1
    finally:
        buf.close()


# ---------------------------------------------------------------------------------------------------------
# Side by side


def digest(*paths: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def sample_file(work: Path, n: int, source: Path | None) -> Path:
    """The first n records of the synthetic LLaVA file (or freshly generated ones) as a JSON list."""
    path = work / "llava.json"
    if source is not None and source.exists():
        records = islice(iter_json_array(source), n)
    else:
        import random

        from bench.synth_sources import COUNTS, llava_records

        frac = n / COUNTS["llava_665k"]
        records = llava_records(n, int(COUNTS["textcaps"] * frac), int(COUNTS["sharegpt_text"] * frac),
                                random.Random(0))
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for i, rec in enumerate(records):
            f.write(("," if i else "") + "\n" + json.dumps(rec, ensure_ascii=False))
        f.write("\n]")
    return path


def side_by_side(name: str, work: Path, reference, new) -> tuple[str, float, float, bool]:
    """Time reference(out, rejects) then new(out, rejects); compare the files they wrote."""
    ref_out = (work / "ref.parquet", work / "ref.rej.parquet")
    new_out = (work / "new.parquet", work / "new.rej.parquet")
    t_ref, t_new = timed(lambda: reference(*ref_out)), timed(lambda: new(*new_out))
    return name, t_ref, t_new, digest(*ref_out) == digest(*new_out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--file", type=Path, default=SYNTH, help="LLaVA-format JSON list to take records from")
    args = ap.parse_args()
    src = "llava_665k"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = sample_file(work, args.records, args.file)
        records = list(read_llava_files(work, [path.name]))
        n = len(records)
        print(f"{n:,} LLaVA records from {args.file if args.file.exists() else 'bench/synth_sources.py'}")
        rows = [side_by_side("normalise (records in memory)", work, lambda o, r: ref_normalize(src, records, o, r),
                             lambda o, r: normalize_records(src, records, o, r))]
        records.clear()
        rows.append(side_by_side("read + normalise (JSON -> parquet)", work,
                                 lambda o, r: ref_normalize(src, ref_read_llava(path), o, r),
                                 lambda o, r: normalize_records(src, read_llava_files(work, [path.name]), o, r)))
    print(f"{'':36}{'reference rec/s':>17}{'new rec/s':>12}{'ratio':>8}  outputs")
    for name, t_ref, t_new, same in rows:
        print(f"{name:36}{n / t_ref:>17,.0f}{n / t_new:>12,.0f}{t_ref / t_new:>7.2f}x  "
              f"{'byte-identical' if same else 'DIFFER'}")
    if not all(r[3] for r in rows):
        raise SystemExit("outputs differ between the reference and the new path")


if __name__ == "__main__":
    main()
