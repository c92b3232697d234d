"""Grouped VQA sources reconcile question by question (issue 2: nothing lost silently). With
`group_by_image`, a normalized record holds every question about one image, so the per-source table counts
images; here every question of the native files — DVQA's train list, ChartQA's human + augmented lists,
DocVQA's and InfographicVQA's `data`, AI2D's per-diagram `questions` dicts — is shown to be in exactly one
normalized record (its id in `meta.question_ids`) or be one reject row, on the demo build of the mirror.

Run: pytest tests/test_vqa_question_accounting.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest


def native_question_ids(mirror: Path, source: str) -> list[str]:
    """Every question id of the files the demo recipe reads, in the adapters' spelling."""
    if source == "dvqa":
        return [str(q["question_id"]) for q in json.loads((mirror / "dvqa/train_qa.json").read_text())]
    if source == "chartqa":
        train = mirror / "chartqa/ChartQA Dataset/train"
        return [f"{name}/{k}" for name in ("train_human", "train_augmented")
                for k in range(len(json.loads((train / f"{name}.json").read_text())))]
    if source == "docvqa":
        return [str(q["questionId"])
                for q in json.loads((mirror / "docvqa/train/train_v1.0_withQT.json").read_text())["data"]]
    if source == "infographicvqa":
        data = json.loads((mirror / "infographicvqa/infographicVQA_train_v1.0.json").read_text())["data"]
        return [str(q["questionId"]) for q in data]
    if source == "ai2d":
        return [q["questionId"] for path in sorted((mirror / "ai2d/questions").glob("*.json"))
                for q in json.loads(path.read_text())["questions"].values()]
    raise AssertionError(source)


@pytest.mark.parametrize("source", ["dvqa", "chartqa", "docvqa", "infographicvqa", "ai2d"])
def test_every_native_question_is_in_one_record_or_one_reject(demo_build, source):
    root, _ = demo_build
    native = native_question_ids(root / "mirror", source)
    assert len(native) == len(set(native)) > 0
    normalized = pl.read_parquet(root / "normalized" / f"{source}.parquet")
    in_records = [q for meta in normalized["meta"].to_list() for q in json.loads(meta)["question_ids"]]
    rejected = pl.read_parquet(root / "rejects" / f"{source}.parquet")["source_id"].to_list()
    placed = Counter(in_records + rejected)
    assert sorted(placed) == sorted(native), "a question is missing or invented"
    assert max(placed.values()) == 1, "a question is counted twice"
    # each record has one human turn per question it holds
    for meta, conversations in zip(normalized["meta"].to_list(), normalized["conversations"].to_list()):
        assert len(conversations) == 2 * len(json.loads(meta)["question_ids"])
