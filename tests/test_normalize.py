"""Shared normalisation rules: repeated native ids get '#N' in file order, exact duplicates and broken
records become rejects with a reason, counts reconcile, the parquet round-trips to canonical samples.

Run: pytest tests/test_normalize.py
"""

import polars as pl

from imp_data.core.schema import Reject, Sample
from imp_data.normalize import iter_outcomes, normalize_records, read_counts, row_to_sample_dict
from imp_data.sources.base import Candidate, Problem


def c(sid, image="coco/1.jpg", *turns, where=""):
    turns = turns or ("<image>\nQ?", "A.")
    conv = [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(turns)]
    return Candidate(source_id=sid, image=image, conversations=conv, meta={"k": sid}, where=where)


RECORDS = [
    c("000000033471"),                                   # first use of a COCO id
    c("000000033471", "coco/1.jpg", "<image>\nDescribe.", "A bus."),   # same id, other conversation -> #2
    c("000000033471", where="f.json record 2"),         # identical to the first -> duplicate_record
    c("2327515", "gqa/2327515.jpg"),
    c("7", None, "Hello", "Hi!"),                        # text-only
    c("8", None, "<image>\nQ", "A"),                     # <image> without an image -> image_token
    c("9", "x.jpg", "<image>\nQ", "  "),                 # empty answer -> empty_value
    c("10", "x.jpg", "<image>\nQ", "A", "Q2"),            # no answer to the last question -> no_answer
    Problem("@f.json:9", "missing_field", "f.json record 9: no 'conversations'"),
    c("000000033471", "coco/1.jpg", "<image>\nWhy?", "Because."),      # third distinct -> #3
]


def test_outcomes_in_order():
    out = list(iter_outcomes("llava_665k", RECORDS))
    kinds = [(o["id"] if isinstance(o, dict) else f"reject:{o.reason}") for o in out]
    assert kinds == [
        "llava_665k/000000033471", "llava_665k/000000033471#2", "reject:duplicate_record",
        "llava_665k/2327515", "llava_665k/7", "reject:image_token", "reject:empty_value", "reject:no_answer",
        "reject:missing_field", "llava_665k/000000033471#3",
    ]
    dup = out[2]
    assert isinstance(dup, Reject) and dup.stage == "normalize" and "f.json record 2" in dup.detail
    assert all(o["source_id"] == "000000033471" for o in (out[0], out[1], out[9]))
    for row in (o for o in out if isinstance(o, dict)):  # what passes the fast rules passes the model too
        Sample.model_validate(row_to_sample_dict({**row, "conversations": row["conversations"]}))


def test_parquet_and_counts(tmp_path):
    out, rej = tmp_path / "n" / "s.parquet", tmp_path / "r" / "s.parquet"
    counts = normalize_records("llava_665k", RECORDS, out, rej)
    assert (counts.read, counts.normalized, counts.repeated_ids) == (10, 5, 2)
    assert counts.rejected == {"duplicate_record": 1, "empty_value": 1, "image_token": 1, "missing_field": 1,
                               "no_answer": 1}
    assert (counts.with_image, counts.text_only) == (4, 1)
    assert read_counts(out) == counts
    frame = pl.read_parquet(out)
    assert frame["id"].is_unique().all()
    first = row_to_sample_dict(frame.row(0, named=True))
    assert first == {"id": "llava_665k/000000033471", "source": "llava_665k", "source_id": "000000033471",
                     "image": "coco/1.jpg", "meta": {"k": "000000033471"},
                     "conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A."}]}
    rejects = pl.read_parquet(rej)
    assert rejects.columns == ["source", "source_id", "stage", "reason", "detail"]
    assert rejects.height == 5 and set(rejects["stage"]) == {"normalize"}
    assert not list(tmp_path.rglob("*.tmp")), "no temp files left behind"
