"""Streaming JSON reader: equals json.load on lists and {"data": [...]} files at any chunk size, and
reports malformed input as one line with file, character offset and record number.

Run: pytest tests/test_jsonstream.py
"""

import json

import pytest

import imp_data.sources.jsonstream as js
from imp_data.core.errors import SourceFormatError

RECORDS = [{"id": i, "text": "é\u2028" + "x" * (i * 7 % 50), "n": 12345678901234, "f": -1.5e10, "l": [1, [2]]}
           for i in range(300)]


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 22])
@pytest.mark.parametrize("indent", [None, 2, "\t"])
def test_matches_json_load(tmp_path, monkeypatch, chunk, indent):
    monkeypatch.setattr(js, "_CHUNK", chunk)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(RECORDS, indent=indent, ensure_ascii=False), encoding="utf-8")
    assert list(js.iter_json_array(path)) == RECORDS
    keyed = tmp_path / "b.json"
    keyed.write_text(json.dumps({"dataset_name": "x", "data": RECORDS, "tail": {"a": [1]}}, indent=indent))
    assert list(js.iter_json_array(keyed, key="data")) == RECORDS


def test_empty_list_and_bom(tmp_path):
    path = tmp_path / "e.json"
    path.write_text("\ufeff  [ ]\n", encoding="utf-8")
    assert list(js.iter_json_array(path)) == []


@pytest.mark.parametrize(
    "text, message",
    [
        ('[{"a": 1}, {"a": 2]', r"e\.json: malformed JSON at character 18 \(record 1\)"),
        ('{"a": 1}', r"expected a JSON list at the top level, found an object"),
        ("", r"found an empty file"),
        ('[{"a": 1}', r"file ends inside the list after record 1 \(truncated\?\)"),
        ("[1, 2,]", r"malformed JSON at character 6 \(record 2\)"),
        ("[1 2]", r"expected ',' or ']'"),
        ("[1] x", r"unexpected data after the top-level list"),
    ],
)
def test_errors_name_file_and_offset(tmp_path, text, message):
    path = tmp_path / "e.json"
    path.write_text(text)
    with pytest.raises(SourceFormatError, match=message):
        list(js.iter_json_array(path))


def test_keyed_errors(tmp_path):
    path = tmp_path / "k.json"
    path.write_text('[{"a": 1}]')
    with pytest.raises(SourceFormatError, match="expected a JSON object with a 'data' list, found a list"):
        list(js.iter_json_array(path, key="data"))
    path.write_text('{"other": []}')
    with pytest.raises(SourceFormatError, match="has no 'data' list"):
        list(js.iter_json_array(path, key="data"))


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.json"
    path.write_bytes(b'[{"a": "\xff"}]')
    with pytest.raises(SourceFormatError, match="not UTF-8"):
        list(js.iter_json_array(path))


def test_jsonl_and_read_json(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": \n')
    it = js.iter_jsonl(path)
    assert next(it) == {"a": 1} and next(it) == {"a": 2}
    with pytest.raises(SourceFormatError, match="malformed JSON on line 4"):
        next(it)
    bad = tmp_path / "b.json"
    bad.write_text('{"a": }')
    with pytest.raises(SourceFormatError, match=r"b\.json: malformed JSON at character 6 \(line 1\)"):
        js.read_json(bad)
