"""Schema rules of docs/design.md §3 — each rule with a passing and a failing example — and schema-file drift.

Run: pytest tests/test_schema.py
"""

import datetime
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from imp_data.core.schema import Reject, Sample, ShardRecord, Turn
from imp_data.schema_export import schema_texts, stale_schemas

ROOT = Path(__file__).resolve().parent.parent


def conv(*values):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


def sample(**kw):
    base = dict(id="llava_665k/1", source="llava_665k", source_id="1", image="coco/train2017/1.jpg",
                conversations=conv("<image>\nWhat?", "A cat."))
    base.update(kw)
    return Sample.model_validate(base)


def test_valid_samples():
    assert sample().id == "llava_665k/1"
    assert sample(image=None, conversations=conv("Hi", "Hello")).image is None
    assert sample(id="llava_665k/1#2").id.endswith("#2")
    assert sample(conversations=conv("What?\n<image>", "A cat.")).conversations[0].value.endswith("<image>")
    assert sample(image="https://example.com/a.jpg").image.startswith("https://")
    assert sample(image="coco/a..b.jpg").image == "coco/a..b.jpg"  # '..' only matters as a path part
    meta = {"question_ids": [1, 2], "split": "train", "score": 0.5, "ok": True, "none": None, "nested": {"a": []}}
    assert sample(meta=meta).meta == meta
    # `from` round-trips with its published spelling
    assert sample().model_dump(by_alias=True)["conversations"][0]["from"] == "human"


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(id="other/1"), "must be 'llava_665k/1'"),
        (dict(id="llava_665k/1#1"), "must be 'llava_665k/1'"),
        (dict(id="llava_665k/1#x"), "must be 'llava_665k/1'"),
        (dict(source="Bad-Name"), "String should match pattern"),
        (dict(source_id=""), "at least 1 character"),
        (dict(conversations=conv("<image>\nQ")), "at least 2 items"),
        (dict(conversations=[{"from": "gpt", "value": "A"}, {"from": "human", "value": "<image>\nQ"}]),
         "roles must alternate"),
        (dict(conversations=conv("<image>\nQ", "A", "Q2")), "ends with a human turn"),
        (dict(conversations=conv("<image>\nQ", "   ")), "turn value is empty"),
        (dict(conversations=[{"from": "system", "value": "x"}, {"from": "gpt", "value": "y"}]), "Input should be"),
        (dict(conversations=conv("Q", "A")), "exactly one <image> token, found 0"),
        (dict(conversations=conv("<image><image>\nQ", "A")), "exactly one <image> token, found 2"),
        (dict(conversations=conv("<image>\nQ", "A", "<image> again", "B")), "outside the first human turn"),
        (dict(image=None), "text-only sample"),
        (dict(image=""), "image path is empty"),
        (dict(image="/abs/x.jpg"), "is absolute"),
        (dict(image="\\\\server\\share\\x.jpg"), "is absolute"),
        (dict(image="\\coco\\x.jpg"), "is absolute"),
        (dict(image="C:\\coco\\x.jpg"), "is absolute"),
        (dict(image="c:/coco/x.jpg"), "is absolute"),
        (dict(image="coco\\..\\..\\x.jpg"), "contains '..'"),
        (dict(image="../x.jpg"), "contains '..'"),
        (dict(image="a\x00b.jpg"), "NUL"),
        (dict(meta={"x": object()}), "meta['x'] is not JSON-serialisable (object"),
        (dict(meta={"qids": [1, {2, 3}]}), "meta['qids'][1] is not JSON-serialisable (set"),
        (dict(meta={"score": float("nan")}), "meta['score'] is not JSON-serialisable (float nan)"),
        (dict(meta={"when": datetime.date(2024, 1, 1)}), "meta['when'] is not JSON-serialisable (date"),
        (dict(meta={1: "x"}), "meta.1.[key]\n  Input should be a valid string"),
        (dict(extra_field=1), "Extra inputs are not permitted"),
    ],
)
def test_each_rule_rejects(kw, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        sample(**kw)


def test_turn_and_reject_rules():
    assert Turn.model_validate({"from": "gpt", "value": "x"}).from_ == "gpt"
    with pytest.raises(ValidationError, match="Extra inputs"):
        Turn.model_validate({"from": "gpt", "value": "x", "weight": 1})
    assert Reject(source="dvqa", source_id="1", stage="render", reason="image_missing").detail == ""
    assert Reject(source="x", source_id="1", stage="dedup", reason="contaminated:textvqa").reason
    with pytest.raises(ValidationError, match="pattern"):
        Reject(source="x", source_id="1", stage="render", reason="Image Missing")
    with pytest.raises(ValidationError, match="Input should be"):
        Reject(source="x", source_id="1", stage="somewhere", reason="x")


def test_shard_record_applies_sample_rules():
    rec = dict(key="000000001", id="dvqa/a", source="dvqa", source_id="a", conversations=conv("<image>\nQ", "A"),
               meta='{"split":"train"}', mix="m", location="mirror/dvqa",
               image=dict(path="a.png", sha256="0" * 64, phash="0" * 16, orig_width=4, orig_height=3, width=8,
                          height=8, mode="pad", fill=[127, 127, 127], resolution=8))
    assert ShardRecord.model_validate(rec).image.width == 8
    assert ShardRecord.model_validate(rec).meta == {"split": "train"}  # JSON text in the tar, a dict once read
    with pytest.raises(ValidationError, match="text-only"):
        ShardRecord.model_validate({**rec, "image": None})
    with pytest.raises(ValidationError, match="pattern"):
        ShardRecord.model_validate({**rec, "key": "../etc"})
    with pytest.raises(ValidationError, match=r"meta\['x'\] is not JSON-serialisable \(float nan\)") as err:
        ShardRecord.model_validate({**rec, "meta": '{"x": NaN}'})
    assert err.value.errors()[0]["loc"] == ("meta",)  # caught by ShardRecord's own field, not the nested Sample
    with pytest.raises(ValidationError, match="JSON input should be string"):
        ShardRecord.model_validate({**rec, "meta": {"split": "train"}})  # an object: the pre-v2 shard layout
    with pytest.raises(ValidationError, match="valid dictionary"):
        ShardRecord.model_validate({**rec, "meta": "[1, 2]"})


def test_schema_files_are_fresh():
    stale = stale_schemas(ROOT / "schemas")
    assert not stale, f"schemas/ is stale for {stale}: run `imp-data schemas`"
    assert set(schema_texts()) == {p.name for p in (ROOT / "schemas").glob("*.schema.json")}
