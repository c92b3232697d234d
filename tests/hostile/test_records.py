"""Per-record failures are data (issue 16): one hostile record costs that record — a reject with its reason —
and the other records of the file still normalize; only a file that is not what it claims stops the build,
with one line naming the file. Last, a build over the demo mirror with all of these at once finishes,
balances and lists every bad record in the mix's rejects.

Run: pytest tests/hostile/test_records.py
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import imp_data.sources.jsonstream as js
from imp_data.core.errors import SourceFormatError
from imp_data.core.limits import applied
from imp_data.core.schema import REASON_RE, UNREADABLE_REASONS, Reject
from imp_data.normalize import iter_outcomes, normalize_records
from imp_data.sources.base import Candidate
from imp_data.sources.registry import get_adapter


def good(i: str, answer: str = "A cat.", **extra) -> str:
    return json.dumps({"id": i, "image": f"coco/{i}.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": answer}], **extra})


def with_text(i: str, text: str) -> str:
    """A record whose first turn is `text` spelled as raw JSON string content (escapes as given)."""
    turns = f'[{{"from": "human", "value": "<image>\\n{text}"}}, {{"from": "gpt", "value": "A cat."}}]'
    return f'{{"id": "{i}", "image": "coco/{i}.jpg", "conversations": {turns}}}'


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def outcomes(root: Path, text: str, adapter: str = "llava_665k", name: str = "f.json") -> list:
    """The file `name` (written under root) through its adapter and the shared rules: a sample's id, or
    (reason, source_id, detail) for a reject."""
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text, encoding="utf-8")
    a = get_adapter(adapter)
    return [(o.reason, o.source_id, o.detail) if isinstance(o, Reject) else o["id"]
            for o in iter_outcomes("s", a.read(root, [name], a.parse_options({})))]


@pytest.mark.parametrize("depth, where", [
    (100_000, ("@f.json:1", "f.json record 1: nested deeper than limits.max_json_depth (64)")),  # past the scanner
    (100, ("deep", "f.json record 1: meta nests deeper than limits.max_json_depth (64)")),  # kept in meta
])
def test_deep_record_is_one_reject(roots, depth, where):
    deep = good("deep")[:-1] + f', "x": {nested(depth)}}}'
    assert outcomes(roots.data, f"[{good('a')}, {deep}, {good('c')}]") == ["s/a", ("record_too_deep", *where), "s/c"]


def test_depth_cap_comes_from_the_recipe_limits(roots):
    text = f"[{good('a', x=json.loads(nested(100)))}, {good('c')}]"
    with applied({"max_json_depth": 200}):
        assert outcomes(roots.data, text) == ["s/a", "s/c"]
    with applied({"max_json_depth": 50}):
        assert outcomes(roots.data, text)[0][0] == "record_too_deep"


@pytest.mark.parametrize("body, limits, reason, detail", [
    (nested(100_000), {}, "record_too_deep", "nested deeper than limits.max_json_depth (64)"),
    (json.dumps(["x" * 5000]), {"max_record_bytes": 4096}, "record_too_large",
     "larger than limits.max_record_bytes (4,096 bytes)"),
])
def test_ai2d_file_past_a_cap_is_one_reject(roots, body, limits, reason, detail):
    q = {"questionId": "1.png-0", "abcLabel": False, "answerTexts": ["a", "b"], "correctAnswer": 1}
    (roots.data / "questions").mkdir()
    (roots.data / "questions" / "1.png.json").write_text(json.dumps({"imageName": "1.png", "questions": {"Q?": q}}))
    (roots.data / "questions" / "0.png.json").write_text('{"imageName": "0.png", "questions": ' + body + "}")
    a = get_adapter("ai2d")
    with applied(limits):
        out = list(iter_outcomes("ai2d", a.read(roots.data, a.default_files, a.parse_options({}))))
    assert [(o.reason, o.source_id, o.detail) if isinstance(o, Reject) else o["id"] for o in out] == [
        (reason, "@questions/0.png.json", f"questions/0.png.json: {detail}"), "ai2d/images/1.png"]


@pytest.mark.parametrize("chunk", [512, 1 << 22])
def test_record_over_the_byte_cap_is_skipped(roots, monkeypatch, chunk):
    monkeypatch.setattr(js, "_CHUNK", chunk)
    big, wide = "x" * 10_000, "€" * 1500  # 4,500 bytes in 1,500 characters
    text = f"[{good('a')}, {good('big', big)}, {good('wide', wide)}, {good('c')}]"
    with applied({"max_record_bytes": 4096}):
        out = outcomes(roots.data, text)
    too_large = "larger than limits.max_record_bytes (4,096 bytes)"
    assert out == ["s/a", ("record_too_large", "@f.json:1", f"f.json record 1: {too_large}"),
                   ("record_too_large", "@f.json:2", f"f.json record 2: {too_large}"), "s/c"]


def test_valid_70_mb_record_parses_under_a_raised_cap(roots):
    answer = "y" * (70 * 2**20)
    path = roots.data / "f.json"
    path.write_text(f"[{good('a')}, {good('big', answer)}, {good('c')}]")
    a = get_adapter("llava_665k")
    with applied({"max_record_bytes": 128 * 2**20}):
        records = list(a.read(roots.data, ["f.json"], a.parse_options({})))
    assert [r.source_id for r in records] == ["a", "big", "c"]
    assert records[1].conversations[1]["value"] == answer
    del records
    records = list(a.read(roots.data, ["f.json"], a.parse_options({})))  # the default cap is 64 MiB
    assert [(r.source_id, getattr(r, "reason", None)) for r in records] == [
        ("a", None), ("@f.json:1", "record_too_large"), ("c", None)]


def test_lone_surrogate_is_one_reject_naming_the_record(roots):
    text = "[" + ", ".join([good("a"), with_text("hi", "x \\ud800 y"), with_text("pair", "\\ud83d\\ude00"),
                            with_text("lo", "\\udc00"), with_text("escaped", "\\\\ud800"),
                            good("meta")[:-1] + ', "note": "\\udfff"}', good("c")]) + "]"

    def lone(where: str, code: str) -> str:
        return f"f.json record {where} holds a lone surrogate \\u{code} (not encodable as UTF-8)"

    assert outcomes(roots.data, text) == [
        "s/a", ("bad_unicode", "hi", lone("1: turn 0", "d800")), "s/pair",
        ("bad_unicode", "lo", lone("3: turn 0", "dc00")), "s/escaped",
        ("bad_unicode", "meta", lone("5: meta", "dfff")), "s/c"]


def test_lone_surrogate_in_grouped_vqa_and_in_an_ai2d_key(roots):
    rec = {"questionId": 1, "question": "Q?", "answers": ["a"], "image": "documents/a.png"}
    text = json.dumps({"data": [rec, {**rec, "questionId": 2, "question": "\udfff?"}, {**rec, "questionId": 3}]})
    assert outcomes(roots.data, text, "docvqa", "d.json") == [
        ("bad_unicode", "2", "d.json record 1: text holds a lone surrogate (not encodable as UTF-8)"),
        "s/documents/a.png"]
    q = {"questionId": "0.png-0", "abcLabel": False, "answerTexts": ["a"], "correctAnswer": 0}
    text = json.dumps({"imageName": "0.png", "questions": {"What \ud800?": q, "Fine?": {**q, "questionId": "0.png-1"}}})
    assert outcomes(roots.data, text, "ai2d", "questions/0.png.json") == [
        ("bad_unicode", "0.png-0", "questions/0.png.json question 'What \\ud800?': text holds a lone surrogate "
                                   "(not encodable as UTF-8)"), "s/images/0.png"]


def test_non_finite_numbers_in_meta_are_rejects(roots):
    text = "[" + ", ".join([good("a", score=0.5), good("nan")[:-1] + ', "score": NaN}',
                            good("inf")[:-1] + ', "x": {"y": [-Infinity]}}', good("big")[:-1] + ', "z": 1e999}',
                            good("digits")[:-1] + ', "n": ' + "1" * 5000 + "}", good("c")]) + "]"
    out = outcomes(roots.data, text)
    serialisable = "is not JSON-serialisable"
    assert out == ["s/a", ("non_finite_number", "nan", f"f.json record 1: meta['score'] {serialisable} (float nan)"),
                   ("non_finite_number", "inf", f"f.json record 2: meta['x']['y'][0] {serialisable} (float -inf)"),
                   ("non_finite_number", "big", f"f.json record 3: meta['z'] {serialisable} (float inf)"),
                   ("bad_number", "@f.json:4", out[4][2]), "s/c"]
    assert out[4][2].startswith("f.json record 4: Exceeds the limit (4300 digits)")


def test_meta_written_is_strict_json_and_bad_rows_are_counted(roots):
    (roots.data / "f.json").write_text("[" + ", ".join([good("a", score=0.5), good("b")[:-1] + ', "s": NaN}',
                                                         with_text("u", "\\ud800"), good("c")]) + "]")
    a = get_adapter("sharegpt4v")  # LLaVA's format; llava_665k adds meta.file_index
    out, rej = roots.data / "n.parquet", roots.data / "r.parquet"
    counts = normalize_records("s", a.read(roots.data, ["f.json"], a.parse_options({})), out, rej)
    assert (counts.read, counts.normalized, counts.rejected) == (4, 2, {"bad_unicode": 1, "non_finite_number": 1})

    def refuse(token):
        raise ValueError(token)

    metas = [json.loads(m, parse_constant=refuse) for m in pl.read_parquet(out)["meta"]]
    assert metas == [{"score": 0.5}, {}] and all(math.isfinite(m.get("score", 0)) for m in metas)
    assert pl.read_parquet(rej)["source_id"].to_list() == ["b", "u"]


@pytest.mark.parametrize("order, ids", [
    (["x", "x", "x#2"], ["s/x", "s/x#2", "s/x#2#2"]),
    (["x#2", "x", "x"], ["s/x#2", "s/x", "s/x#3"]),
    (["x", "x#2", "x", "x#2", "x"], ["s/x", "s/x#2", "s/x#3", "s/x#2#2", "s/x#4"]),
])
def test_repeat_suffixes_never_collide_with_native_ids(roots, order, ids):
    text = "[" + ", ".join(good(i, f"Answer {k}.") for k, i in enumerate(order)) + "]"
    assert outcomes(roots.data, text) == ids


def test_any_other_conversion_failure_is_that_records_reject():
    class Unspellable:  # a turn value the batch conversion cannot format
        def __format__(self, spec):
            raise RuntimeError("boom")

    def rec(i: str, value) -> Candidate:
        return Candidate(i, None, [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": value}], {},
                         f"f.json record {i}")

    out = list(iter_outcomes("s", [rec("0", "Hello."), rec("1", Unspellable()), rec("2", "Bye.")]))
    assert [o["id"] if isinstance(o, dict) else (o.reason, o.source_id, o.detail) for o in out] == [
        "s/0", ("bad_record", "1", "f.json record 1: cannot be converted (RuntimeError: boom)"), "s/2"]


def laion_table(n: int, timestamps: pa.Array | None = None) -> pa.Table:
    return pa.table({"link": [f"https://example.org/{i}.jpg" for i in range(n)],
                     "caption": [f"A picture, number {i}. " * 20 for i in range(n)],
                     "message_id": [f"m{i}" for i in range(n)],
                     "timestamp": timestamps if timestamps is not None else pa.nulls(n, pa.string()),
                     "image": pa.nulls(n)})


def laion(root: Path) -> list:
    a = get_adapter("laion_gpt4v")
    return list(a.read(root, a.default_files, a.parse_options({})))


@pytest.mark.parametrize("stamps, expected", [
    (pa.array([datetime.datetime(2023, 11, 1, 12), None], pa.timestamp("ns", tz="UTC")),
     ["2023-11-01T12:00:00Z", None]),
    (pa.array([datetime.datetime(2023, 11, 1, 12, 0, 0, 5), None], pa.timestamp("us")),
     ["2023-11-01T12:00:00.000005", None]),
    (pa.array([datetime.date(2023, 11, 1), None], pa.date32()), ["2023-11-01", None]),
    (pa.array([1698840000, None], pa.int64()), [None, None]),
])
def test_laion_typed_timestamp_column_is_provenance(roots, stamps, expected):
    (roots.data / "data").mkdir()
    pq.write_table(laion_table(2, stamps), roots.data / "data" / "train-0.parquet")
    out = list(iter_outcomes("laion_gpt4v", laion(roots.data)))
    assert [json.loads(o["meta"])["timestamp"] for o in out] == expected


def corrupt(path: Path, group: int, column: str) -> None:
    """Flip bytes at the end of one column chunk: its (zstd) data page no longer decompresses."""
    chunk = pq.ParquetFile(path).metadata.row_group(group).column(pq.ParquetFile(path).schema_arrow.names.index(column))
    end = (chunk.dictionary_page_offset or chunk.data_page_offset) + chunk.total_compressed_size
    data = bytearray(path.read_bytes())
    data[end - 12:end - 2] = bytes(b ^ 0xFF for b in data[end - 12:end - 2])
    path.write_bytes(bytes(data))


def test_laion_corrupt_page_rejects_the_rows_it_covers(roots):
    path = roots.data / "data" / "train-0.parquet"
    path.parent.mkdir()
    pq.write_table(laion_table(10), path, row_group_size=4, compression="zstd")
    corrupt(path, 1, "caption")
    out = list(iter_outcomes("laion_gpt4v", laion(roots.data)))
    assert [o["source_id"] if isinstance(o, dict) else (o.reason, o.source_id) for o in out] == [
        "m0", "m1", "m2", "m3", *[("corrupt_row", f"m{i}") for i in range(4, 8)], "m8", "m9"]
    assert out[4].detail.startswith("data/train-0.parquet row 4: row group 1 holds a data page that cannot be read (")
    corrupt(path, 1, "message_id")
    with pytest.raises(SourceFormatError) as err:
        laion(roots.data)
    assert str(err.value).startswith(f"{path}: row group 1 (rows 4-7) cannot be read: ") and "\n" not in str(err.value)


def test_non_utf8_byte_is_named_by_its_file_offset(roots):
    head = "[" + ", ".join(good(f"{i:07d}") for i in range(30_000))
    pad = 5_000_000 - len(head.encode()) - len(', {"id": "')
    assert pad > 0
    data = (head + ', {"id": "' + "z" * pad).encode() + b"\xff" + b'"}]'
    (roots.data / "f.json").write_bytes(data)
    assert data.index(b"\xff") == 5_000_000
    a = get_adapter("llava_665k")
    with pytest.raises(SourceFormatError) as err:
        list(a.read(roots.data, ["f.json"], a.parse_options({})))
    assert str(err.value) == f"{roots.data / 'f.json'}: not UTF-8 text (invalid start byte at byte 5000000)"


def test_new_reason_codes_are_documented_snake_case():
    import re

    assert {"record_too_large", "record_too_deep", "bad_unicode", "bad_number", "non_finite_number", "corrupt_row",
            "bad_record"} <= set(UNREADABLE_REASONS)
    assert all(re.fullmatch(REASON_RE, code) for code in UNREADABLE_REASONS)


def test_build_over_a_mirror_with_every_bad_record(roots):
    """Every per-record case of the issue at once, records and images: the build finishes, balances, and
    lists each bad record with its reason."""
    from imp_data.build import build
    from imp_data.core.context import BuildContext
    from imp_data.core.layout import Layout
    from imp_data.core.recipe import Limits, load_recipe
    from imp_data.fixtures import write_mirror
    from tests.conftest import DEMO_RECIPE

    mirror = roots.data / "mirror"
    write_mirror(mirror, scale=1, seed=0)
    # LLaVA-665K: one record of each kind appended to the published list
    path = mirror / "llava_665k" / "llava_v1_5_mix665k.json"
    published = path.read_text(encoding="utf-8").rstrip()
    n = len(json.loads(published))

    def text_only(i: str, answer: str) -> str:
        return json.dumps({"id": i, "conversations": [{"from": "human", "value": "Write a haiku."},
                                                     {"from": "gpt", "value": answer}]})

    bad = [good("deep")[:-1] + f', "x": {nested(100_000)}}}', with_text("surrogate", "\\ud800"),
           good("nan")[:-1] + ', "score": NaN}', good("inf")[:-1] + ', "score": Infinity}', good("big", "b" * 2**21),
           text_only("x", "One."), text_only("x", "Two."), text_only("x#2", "Three.")]
    path.write_text(published[:-1] + ", " + ", ".join(bad) + "]", encoding="utf-8")
    # AI2D: a diagram file nested 100,000 deep, and a question whose text holds a lone surrogate
    q = {"questionId": "98.png-0", "abcLabel": False, "answerTexts": ["a", "b"], "correctAnswer": 0}
    (mirror / "ai2d" / "questions" / "99.png.json").write_text('{"imageName": "99.png", "questions": '
                                                              + nested(100_000) + "}")
    (mirror / "ai2d" / "questions" / "98.png.json").write_text(json.dumps({"imageName": "98.png", "questions": {
        "What \ud800?": q}}))
    # LAION-GPT-V: a typed timestamp column, row groups of 4 and a corrupt caption page in the second
    laion_path = next((mirror / "laion_gpt4v" / "data").glob("*.parquet"))
    table = pq.read_table(laion_path)
    stamps = pa.array([None if s is None else datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
                       for s in table["timestamp"].to_pylist()], pa.timestamp("us", tz="UTC"))
    table = table.set_column(table.schema.names.index("timestamp"), "timestamp", stamps)
    pq.write_table(table, laion_path, row_group_size=4, compression="zstd")
    corrupt(laion_path, 1, "caption")
    # and the image cases, in the same build (tests/hostile/test_images_archives.py has them one by one)
    from tests.hostile.test_images_archives import HOSTILE_IMAGES, plant_hostile_images

    plant_hostile_images(mirror, roots.data)
    recipe = load_recipe(DEMO_RECIPE)
    recipe = recipe.model_copy(update={"limits": Limits(max_record_bytes=2**20)})

    build(BuildContext(recipe=recipe, data_root=roots.data, progress=False), mixes=["demo_stage2"])

    layout = Layout(roots.data)
    stats = json.loads(layout.stats("demo_stage2").read_text())
    assert stats["balanced"] is True
    for source, entry in stats["sources"].items():
        out = sum(entry["rejected"].values()) + sum(entry["dropped"].values()) + entry["taken"]
        assert entry["read"] == out, source
    rejects = {(r["source"], r["source_id"], r["reason"])
               for r in pl.read_parquet(layout.rejects("demo_stage2")).iter_rows(named=True)}
    name = "llava_v1_5_mix665k.json"
    expected = {("llava_665k", f"@{name}:{n}", "record_too_deep"), ("llava_665k", "surrogate", "bad_unicode"),
                ("llava_665k", "nan", "non_finite_number"), ("llava_665k", "inf", "non_finite_number"),
                ("llava_665k", f"@{name}:{n + 4}", "record_too_large"),
                ("ai2d", "@questions/99.png.json", "record_too_deep"), ("ai2d", "98.png-0", "bad_unicode"),
                *{("laion_gpt4v", sid, "corrupt_row") for sid in table["message_id"].to_pylist()[4:8]},
                *{("llava_665k", sid, reason) for sid, reason in HOSTILE_IMAGES.items()}}
    assert expected <= rejects, expected - rejects
    ids = pl.read_parquet(layout.index("demo_stage2"))["id"].to_list()
    assert len(ids) == len(set(ids))
    assert {"llava_665k/x", "llava_665k/x#2", "llava_665k/x#2#2"} <= set(ids)
