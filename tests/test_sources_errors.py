"""Adapter registry and file-level errors: the ten adapters are registered with documented options; an
unknown name lists the valid ones; malformed JSON, a wrong top-level type and a missing file raise one
`SourceFormatError` line naming the file (and the character offset and record for malformed JSON).

Run: pytest tests/test_sources_errors.py
"""

from __future__ import annotations

import json

import pytest

from imp_data.core.errors import SourceFormatError
from imp_data.sources.base import resolve_files
from imp_data.sources.registry import ADAPTERS, get_adapter
from tests.source_support import read

NAMES = ["llava_665k", "llava_pretrain", "dvqa", "chartqa", "docvqa", "ai2d", "infographicvqa", "sharegpt4v",
         "laion_gpt4v", "allava"]
LIST_ADAPTERS = ["llava_665k", "llava_pretrain", "sharegpt4v", "allava", "dvqa", "chartqa"]
DATA_ADAPTERS = ["docvqa", "infographicvqa"]  # top level {"data": [...]}



def test_registry_holds_the_ten_adapters():
    assert sorted(ADAPTERS) == sorted(NAMES)
    for name, adapter in ADAPTERS.items():
        assert adapter.name == name and adapter.description and adapter.default_files


def test_unknown_adapter_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown source adapter 'llava'; valid adapters: ai2d, allava, chartqa"):
        get_adapter("llava")


@pytest.mark.parametrize("name", NAMES)
def test_options_forbid_extras_and_document_their_defaults(name):
    options = ADAPTERS[name].Options
    assert options.model_config.get("extra") == "forbid"
    for field_name, field in options.model_fields.items():
        assert field.description and "default" in field.description.lower(), f"{name}.{field_name}"
    with pytest.raises(ValueError):
        ADAPTERS[name].parse_options({"bogus": True})


@pytest.mark.parametrize("name", LIST_ADAPTERS + DATA_ADAPTERS)
def test_malformed_json_names_file_offset_and_record(tmp_path, name):
    body = '[{"id": 1, "question_id": 1}, {"id": }]'
    text = body if name in LIST_ADAPTERS else '{"dataset_split": "train", "data": ' + body + "}"
    (tmp_path / "broken.json").write_text(text)
    with pytest.raises(SourceFormatError) as err:
        read(name, tmp_path, ["broken.json"])
    offset = text.index("}]")
    assert str(err.value) == (f"{tmp_path / 'broken.json'}: malformed JSON at character {offset} (record 1): "
                              "Expecting value")


@pytest.mark.parametrize("name", LIST_ADAPTERS)
def test_object_where_a_list_is_published(tmp_path, name):
    (tmp_path / "a.json").write_text(json.dumps({"data": []}))
    with pytest.raises(SourceFormatError, match=r"a\.json: expected a JSON list at the top level, found an object"):
        read(name, tmp_path, ["a.json"])


@pytest.mark.parametrize("name", DATA_ADAPTERS)
def test_list_where_a_data_object_is_published(tmp_path, name):
    (tmp_path / "a.json").write_text("[]")
    with pytest.raises(SourceFormatError, match=r"a\.json: expected a JSON object with a 'data' list, found a list"):
        read(name, tmp_path, ["a.json"])
    (tmp_path / "a.json").write_text('{"questions": []}')
    with pytest.raises(SourceFormatError, match=r"a\.json: top-level object has no 'data' list"):
        read(name, tmp_path, ["a.json"])


def test_truncated_file(tmp_path):
    (tmp_path / "t.json").write_text('[{"id": "a", "conversations": []},')
    with pytest.raises(SourceFormatError, match=r"t\.json: file ends inside the list after record 1"):
        read("llava_665k", tmp_path, ["t.json"])


@pytest.mark.parametrize("name", NAMES)
def test_missing_default_files_are_listed(tmp_path, name):
    with pytest.raises(SourceFormatError, match="expected file"):
        resolve_files(tmp_path, ADAPTERS[name].default_files)
