"""Schema parity (issue 19): stock `jsonschema` with the committed schemas/ refuses every example the models
refuse in the schema and recipe tests, and accepts the valid ones (the shipped recipes, the demo's shard
records), so a CI that checks files with `check-jsonschema` sees what `imp-data validate` sees.

What JSON Schema cannot say (it compares no two values, sees no array's length parity) is listed in
EXCEPTIONS with an example the models refuse; the test keeps each one a real exception, so the list stays
true when the schema learns more.

Run: pytest tests/test_schema_parity.py
"""

from __future__ import annotations

import copy
import functools
import json
import tarfile
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

import tests.test_recipe as recipe_tests
import tests.test_schema as schema_tests
from imp_data.core.errors import RecipeError
from imp_data.core.recipe import parse_recipe
from imp_data.core.schema import Reject, Sample, ShardRecord, Turn
from tests.hostile import test_containment_and_cli as hostile

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"sample": Sample, "shard_record": ShardRecord, "turn": Turn, "reject": Reject}


@functools.cache
def schema(name: str) -> dict:
    return json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())


def accepts(name: str, instance) -> bool:
    """Stock jsonschema, the draft the file declares: does the committed schema let `instance` through?"""
    try:
        jsonschema.validate(instance, schema(name))
    except jsonschema.ValidationError:
        return False
    return True


def refused_by_model(name: str, instance) -> bool:
    try:
        parse_recipe(instance) if name == "recipe" else MODELS[name].model_validate(instance)
    except (ValidationError, RecipeError):
        return True
    return False


# ---------------------------------------------------------------------------------------------------------
# samples and shard records: every failing example of tests/test_schema.py, through both schemas

BASE = schema_tests.sample().model_dump(by_alias=True)  # the valid sample those examples edit
SAMPLE_CASES = next(m for m in schema_tests.test_each_rule_rejects.pytestmark if m.name == "parametrize").args[1]
GEOMETRY = {"sha256": "0" * 64, "phash": "0" * 16, "orig_width": 4, "orig_height": 3, "width": 8, "height": 8,
            "mode": "pad", "fill": [127, 127, 127], "resolution": 8}
# test_schema.py examples whose rule JSON Schema cannot state: expected message -> why
CROSS_FIELD = {
    "must be 'llava_665k/1'": "the id is built from source and source_id: JSON Schema compares no two values",
    "ends with a human turn": "an even number of turns: JSON Schema sees no array's length parity",
    "(float nan)": "NaN is no JSON value (a strict parser refuses the document); jsonschema's number checks pass it",
}


def as_shard_record(sample: dict) -> dict:
    """The shard member KEY.json a build would write for `sample` (ShardRecord applies the Sample rules):
    meta as JSON text, as shards/assemble.py `sample_json` writes it."""
    record = {**sample, "key": "000000001", "mix": "m", "location": "mirror/llava_665k"}
    record["meta"] = json.dumps(record.get("meta", {}))
    image = record.pop("image", None)
    record["image"] = None if image is None else {"path": image, **GEOMETRY}
    return record


@pytest.mark.parametrize("kw, message", SAMPLE_CASES, ids=[m for _, m in SAMPLE_CASES])
@pytest.mark.parametrize("name", ["sample", "shard_record"])
def test_schemas_refuse_what_the_sample_rules_refuse(name, kw, message):
    if name == "shard_record" and "meta" in kw and "(float nan)" not in message:
        pytest.skip("KEY.json holds meta as JSON text: a non-JSON value or key has no spelling there")
    instance = {**BASE, **kw}
    instance = as_shard_record(instance) if name == "shard_record" else instance
    assert refused_by_model(name, instance)
    why = next((why for needle, why in CROSS_FIELD.items() if needle in message), None)
    assert accepts(name, instance) == (why is not None), why or f"{name}.schema.json lets through: {message}"


VALID_SAMPLES = [{}, {"image": None, "conversations": schema_tests.conv("Hi", "Hello")}, {"id": "llava_665k/1#2"},
                 {"conversations": schema_tests.conv("What?\n<image>", "A cat.")},
                 {"image": "https://example.com/a.jpg"}, {"image": "coco/a..b.jpg"},
                 {"meta": {"question_ids": [1, 2], "split": "train", "score": 0.5, "ok": True, "none": None,
                           "nested": {"a": [{"b": -1e300}]}}}]


@pytest.mark.parametrize("kw", VALID_SAMPLES)
def test_valid_samples_pass(kw):
    instance = {**BASE, **kw}
    assert not refused_by_model("sample", instance)
    assert accepts("sample", instance) and accepts("shard_record", as_shard_record(instance))


def test_demo_shard_records_pass(demo_build):
    records = []
    for tar in sorted((demo_build[0] / "mixes").glob("*/shards/*.tar")):
        with tarfile.open(tar) as archive:
            records += [json.load(archive.extractfile(m)) for m in archive.getmembers() if m.name.endswith(".json")]
    assert {r["image"] is None for r in records} == {True, False}  # text-only and image samples both
    for record in records:
        assert accepts("shard_record", record), record["key"]
        sample = {k: record[k] for k in ("id", "source", "source_id", "conversations")}
        sample["meta"] = json.loads(record["meta"])  # JSON text in KEY.json, an object in a Sample
        assert accepts("sample", {**sample, "image": record["image"] and record["image"]["path"]}), record["key"]


@pytest.mark.parametrize("name, instance, ok", [  # tests/test_schema.py::test_turn_and_reject_rules
    ("turn", {"from": "gpt", "value": "x"}, True),
    ("turn", {"from": "gpt", "value": "x", "weight": 1}, False),
    ("turn", {"from": "gpt", "value": " \n"}, False),
    ("reject", {"source": "dvqa", "source_id": "1", "stage": "render", "reason": "image_missing"}, True),
    ("reject", {"source": "x", "source_id": "1", "stage": "dedup", "reason": "contaminated:textvqa"}, True),
    ("reject", {"source": "x", "source_id": "1", "stage": "render", "reason": "Image Missing"}, False),
    ("reject", {"source": "x", "source_id": "1", "stage": "somewhere", "reason": "x"}, False),
])
def test_turn_and_reject(name, instance, ok):
    assert refused_by_model(name, instance) != ok
    assert accepts(name, instance) == ok


# ---------------------------------------------------------------------------------------------------------
# recipes: tests/test_recipe.py's all-problems recipe one problem at a time, test_recipes_paper.py's
# file_positions, and every recipe case of tests/hostile/test_containment_and_cli.py

GOOD = recipe_tests.GOOD


def share(raw: dict) -> dict:
    return raw["mixes"]["m"]["sources"]["dvqa"]


def positions(value):
    def edit(raw):
        raw["sources"]["dvqa"]["adapter"] = "llava_665k"
        share(raw)["drop"] = [{"name": "imp_removals", "file_positions": value}]
    return edit


REFUSED_RECIPES = {
    "name": lambda raw: raw.update(name="Bad Name"),
    "seed": lambda raw: raw.update(seed="x"),
    "render.mode": lambda raw: raw.update(render={"mode": "crop"}),
    "render.fill": lambda raw: raw.update(render={"fill": [0, 0, 300]}),
    "unknown option": lambda raw: raw["sources"]["dvqa"].update(options={"no_such_option": 1}),
    "option of another adapter": lambda raw: raw["sources"]["dvqa"].update(options={"exclude_file": "t.txt"}),
    "unknown adapter": lambda raw: raw["sources"]["dvqa"].update(adapter="nope"),
    "no adapter": lambda raw: raw["sources"]["dvqa"].pop("adapter"),
    "source named benchmarks": lambda raw: raw["sources"].update(benchmarks=raw["sources"]["dvqa"]),
    "stage 3": lambda raw: raw["mixes"]["m"].update(stage=3),
    "take -1": lambda raw: share(raw).update(take=-1),
    "take -3": lambda raw: share(raw).update(take=-3),
    "take '5'": lambda raw: share(raw).update(take="5"),
    "file_positions [-1]": positions([-1]),
    "file_positions [true]": positions([True]),
    "file_positions ['3']": positions(["3"]),
}
# what JSON Schema cannot say about a recipe: name -> (edit of GOOD, why)
RECIPE_EXCEPTIONS = {
    "undeclared source": (lambda raw: raw["mixes"]["m"]["sources"].update(missing={}),
                          "a mix's sources must be keys of `sources`: JSON Schema compares no two values"),
    "source_priority outside the mix": (lambda raw: raw["mixes"]["m"].update(dedup={"source_priority": ["x"]}),
                                        "source_priority names keys of the mix's sources: no two values compared"),
    "file_positions on dvqa": (lambda raw: share(raw).update(drop=[{"name": "x", "file_positions": [3]}]),
                               "the rule depends on the adapter of the source it names, declared elsewhere"),
    "duplicate rule names": (lambda raw: share(raw).update(drop=[{"name": "a", "text_only": True},
                                                                 {"name": "a", "image_prefix": "x/"}]),
                             "uniqueItems compares whole items, not one field of them"),
    "take 5.0": (lambda raw: share(raw).update(take=5.0),
                 "JSON Schema's integer is a number with no fraction, 5.0 included (draft 2020-12 §6.1.1)"),
}
HOSTILE_EXCEPTIONS = {"duplicate rule names"}


def edited(base: dict, edit) -> dict:
    raw = copy.deepcopy(base)
    edit(raw)
    return raw


@pytest.mark.parametrize("case", list(REFUSED_RECIPES))
def test_recipe_schema_refuses(case):
    raw = edited(GOOD, REFUSED_RECIPES[case])
    assert refused_by_model("recipe", raw)
    assert not accepts("recipe", raw), f"recipe.schema.json lets through: {case}"


@pytest.mark.parametrize("case", list(hostile.RECIPE_CASES))
def test_recipe_schema_refuses_the_hostile_cases(case):
    raw = edited(yaml.safe_load(hostile.DEMO_RECIPE.read_text()), hostile.RECIPE_CASES[case][0])
    assert refused_by_model("recipe", raw)
    assert accepts("recipe", raw) == (case in HOSTILE_EXCEPTIONS), case


@pytest.mark.parametrize("case", list(RECIPE_EXCEPTIONS))
def test_documented_recipe_exceptions(case):
    """Refused by `parse_recipe`, let through by JSON Schema for the reason given; not silently skipped."""
    edit, why = RECIPE_EXCEPTIONS[case]
    raw = edited(GOOD, edit)
    assert refused_by_model("recipe", raw)
    assert accepts("recipe", raw), f"no longer an exception, move it to REFUSED_RECIPES: {case} ({why})"


def test_roles_past_the_second_turn_are_an_exception():
    """Alternation is stated for the first two turns only: JSON Schema sees no item's index parity."""
    instance = {**BASE, "conversations": schema_tests.conv("<image>\nQ", "A", "B", "C")}
    instance["conversations"][2]["from"], instance["conversations"][3]["from"] = "gpt", "human"
    assert refused_by_model("sample", instance) and accepts("sample", instance)


@pytest.mark.parametrize("path", sorted((ROOT / "manifests").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_pass(path):
    raw = yaml.safe_load(path.read_text())
    assert not refused_by_model("recipe", raw) and accepts("recipe", raw)


@pytest.mark.parametrize("edit", [
    lambda raw: raw["mixes"]["m"].update(dedup=yaml.safe_load("mode: off")),  # YAML 1.1: false, read as "off"
    lambda raw: raw["sources"]["dvqa"].update(files=["a/b.json", "a..b.json"], options={"group_by_image": False}),
    lambda raw: share(raw).update(take="all", drop=[{"name": "textcaps", "image_prefix": "textvqa/"}]),
], ids=["mode off", "files and options", "take all"])
def test_valid_recipes_pass(edit):
    raw = edited(GOOD, edit)
    assert not refused_by_model("recipe", raw) and accepts("recipe", raw)
