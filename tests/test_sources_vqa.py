"""Question-answer adapters (dvqa, chartqa, docvqa, infographicvqa): real published records become the
exact LLaVA conversations — grouped per image with the suffix on the first question, or one per
question — and the options (prompt, grouping, multi-answer rule) and per-record problems behave as
documented.

Run: pytest tests/test_sources_vqa.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imp_data.sources import vqa
from imp_data.sources.base import Candidate, Problem
from imp_data.sources.registry import get_adapter
from tests.source_support import SAMPLES, read, write

SHORT = "Answer the question using a single word or phrase."




def rrc(tmp_path: Path, name: str, sample: str) -> str:
    """The sample's records inside the real files' `{"data": [...]}` wrapper (the sample omits it)."""
    data = json.loads((SAMPLES / sample).read_text(encoding="utf-8"))
    return write(tmp_path, name,
                 {"dataset_name": "x", "dataset_split": "train", "dataset_version": "1.0", "data": data})


# ---------------------------------------------------------------------------------------------------------
# real records


def test_dvqa_real_record():
    assert read("dvqa", SAMPLES, ["dvqa.json"]) == [Candidate(
        "bar_train_00200000.png", "bar_train_00200000.png",
        [{"from": "human",
          "value": "<image>\nWhat is the label of the second bar from the bottom in each group?\n" + SHORT},
         {"from": "gpt", "value": "bond"}],
        {"split_file": "dvqa", "question_ids": ["120000013"], "template_ids": ["data"]},
        "dvqa.json record 0",
    )]


def test_chartqa_real_records_grouped_per_chart_labels_as_published():
    out = read("chartqa", SAMPLES, ["chartqa.json", "chartqa_augmented.json"])
    assert [c.source_id for c in out] == ["10095.png", "10305.png", "4198.png", "two_col_103562.png",
                                          "two_col_2954.png", "multi_col_40810.png"]
    assert out[0] == Candidate("10095.png", "10095.png", [
        {"from": "human", "value": "<image>\nIs the value of Favorable 38 in 2015?\n" + SHORT},
        {"from": "gpt", "value": "Yes"},
        {"from": "human", "value": "How many values are below 40 in Unfavorable graph?"},
        {"from": "gpt", "value": "6"},
    ], {"split_file": "chartqa", "question_ids": ["chartqa/0", "chartqa/1"]}, "chartqa.json record 0")
    assert out[2].conversations[1] == {"from": "gpt", "value": "44362"}  # Excel date serial, kept
    assert out[4] == Candidate("two_col_2954.png", "two_col_2954.png", [
        {"from": "human", "value": "<image>\nWhat game topped the charts with 512.3 million hours watched on Twitch "
                                   "in the first half of 2019?\n" + SHORT},
        {"from": "gpt", "value": "League of Legends"},
        {"from": "human", "value": "How many hours did League of Legends watch on Twitch in the first half of 2019?"},
        {"from": "gpt", "value": "512.3"},
    ], {"split_file": "chartqa_augmented", "question_ids": ["chartqa_augmented/1", "chartqa_augmented/2"]},
        "chartqa_augmented.json record 1")


def test_docvqa_real_record(tmp_path):
    name = rrc(tmp_path, "train/train_v1.0_withQT.json", "docvqa.json")
    assert read("docvqa", tmp_path, [name]) == [Candidate(
        "documents/xnbl0037_1.png", "documents/xnbl0037_1.png",
        [{"from": "human", "value": "<image>\nwhat is the date mentioned in this letter?\n" + SHORT},
         {"from": "gpt", "value": "1/8/93"}],
        {"docId": 279, "data_split": "train", "question_ids": ["337"], "question_types": [["handwritten", "form"]]},
        "train/train_v1.0_withQT.json record 0",
    )]


def test_infographicvqa_real_records(tmp_path):
    name = rrc(tmp_path, "infographicVQA_train_v1.0.json", "infographicvqa.json")
    assert read("infographicvqa", tmp_path, [name]) == [
        Candidate("20471.jpeg", "20471.jpeg",
                  [{"from": "human", "value": "<image>\nWhich type of fonts offer better readability?\n" + SHORT},
                   {"from": "gpt", "value": "serif fonts"}],
                  {"data_split": "train", "question_ids": ["65718"]}, "infographicVQA_train_v1.0.json record 0"),
        Candidate("37313.jpeg", "37313.jpeg",
                  [{"from": "human", "value": "<image>\nWhich social platform has heavy female audience?\n" + SHORT},
                   {"from": "gpt", "value": "pinterest"}],
                  {"data_split": "val", "ocr_output_file": "37313.json", "question_ids": ["98313"]},
                  "infographicVQA_train_v1.0.json record 1"),
    ]


def test_infographicvqa_default_file_matches_both_spellings(tmp_path):
    from imp_data.sources.base import resolve_files

    name = rrc(tmp_path, "infographicsVQA_train_v1.0.json", "infographicvqa.json")
    assert [p.name for p in resolve_files(tmp_path, get_adapter("infographicvqa").default_files)] == [name]


# ---------------------------------------------------------------------------------------------------------
# options


def dvqa_file(tmp_path: Path) -> str:
    def q(qid, image, question, answer, template="data"):
        return {"question": question, "question_id": qid, "template_id": template, "answer": answer,
                "image": image, "answer_bbox": []}
    return write(tmp_path, "train_qa.json", [
        q(1, "bar_train_00000001.png", "How many bars are there?", "3", "structure"),
        q(2, "bar_train_00000002.png", "What is the value of tax?", "5"),
        q(3, "bar_train_00000001.png", "Is bond larger than cloud?", "no", "reasoning"),
    ])


def test_grouping_keeps_first_seen_image_order_and_suffix_on_first_question_only(tmp_path):
    out = read("dvqa", tmp_path, [dvqa_file(tmp_path)])
    assert out == [
        Candidate("bar_train_00000001.png", "bar_train_00000001.png", [
            {"from": "human", "value": "<image>\nHow many bars are there?\n" + SHORT},
            {"from": "gpt", "value": "3"},
            {"from": "human", "value": "Is bond larger than cloud?"},
            {"from": "gpt", "value": "no"},
        ], {"split_file": "train_qa", "question_ids": ["1", "3"], "template_ids": ["structure", "reasoning"]},
            "train_qa.json record 0"),
        Candidate("bar_train_00000002.png", "bar_train_00000002.png", [
            {"from": "human", "value": "<image>\nWhat is the value of tax?\n" + SHORT}, {"from": "gpt", "value": "5"},
        ], {"split_file": "train_qa", "question_ids": ["2"], "template_ids": ["data"]}, "train_qa.json record 1"),
    ]


def test_grouping_across_arrow_chunks_is_the_same(tmp_path, monkeypatch):
    name = dvqa_file(tmp_path)
    whole = read("dvqa", tmp_path, [name])
    monkeypatch.setattr(vqa, "_CHUNK", 1)
    assert read("dvqa", tmp_path, [name]) == whole


def test_one_record_per_question_and_no_prompt(tmp_path):
    out = read("dvqa", tmp_path, [dvqa_file(tmp_path)], group_by_image=False, prompt=None)
    assert [c.source_id for c in out] == ["1", "2", "3"]
    assert out[2] == Candidate("3", "bar_train_00000001.png", [
        {"from": "human", "value": "<image>\nIs bond larger than cloud?"}, {"from": "gpt", "value": "no"},
    ], {"split_file": "train_qa", "question_ids": ["3"], "template_ids": ["reasoning"]}, "train_qa.json record 2")


@pytest.mark.parametrize("rule, answers, expected", [
    ("first", ["b", "a", "a"], "b"),
    ("most_common", ["b", "a", "a"], "a"),
    ("most_common", ["b", "a", "a", "b"], "b"),  # tie -> first listed
    ("first", ["", "  ", "x"], "x"),  # blank answers are not answers
])
def test_multi_answer_rule(tmp_path, rule, answers, expected):
    name = write(tmp_path, "d.json", {"data": [
        {"questionId": 9, "question": "q?", "image": "documents/a_1.png", "answers": answers}]})
    [c] = read("docvqa", tmp_path, [name], answer_choice=rule)
    assert c.conversations[1] == {"from": "gpt", "value": expected}


def test_chartqa_list_label_uses_the_answer_rule(tmp_path):
    name = write(tmp_path, "train_human.json", [{"imgname": "1.png", "query": "q?", "label": ["x", "y", "y"]}])
    assert read("chartqa", tmp_path, [name])[0].conversations[1]["value"] == "x"
    assert read("chartqa", tmp_path, [name], answer_choice="most_common")[0].conversations[1]["value"] == "y"


def test_unknown_option_is_refused():
    with pytest.raises(ValueError, match="no_such_option"):
        get_adapter("dvqa").parse_options({"no_such_option": 1})


# ---------------------------------------------------------------------------------------------------------
# problems


@pytest.mark.parametrize("change, reason, sid", [
    ({"answer": ""}, "empty_answer", "5"),
    ({"answer": 7}, None, "5"),  # int answers become their decimal string
    ({"answer": True}, "bad_type", "5"),
    ({"question": "  "}, "empty_question", "5"),
    ({"question": ["q"]}, "bad_type", "5"),
    ({"image": None}, "missing_field", "5"),
    ({"question_id": None}, "missing_field", "@train_qa.json:0"),
    ({"question_id": 1.5}, "bad_type", "@train_qa.json:0"),
])
def test_dvqa_bad_question_is_a_problem_its_siblings_stay(tmp_path, change, reason, sid):
    good = {"question": "How many bars?", "question_id": 6, "template_id": "data", "answer": "2",
            "image": "bar_train_00000009.png", "answer_bbox": []}
    bad = {**good, "question_id": 5, **change}
    out = read("dvqa", tmp_path, [write(tmp_path, "train_qa.json", [bad, good])], group_by_image=False)
    if reason is None:
        assert out[0].conversations[1] == {"from": "gpt", "value": "7"}
        return
    assert out[0] == Problem(sid, reason, out[0].detail)
    assert out[0].detail.startswith("train_qa.json record 0: ")
    assert [c.source_id for c in out[1:]] == ["6"]


@pytest.mark.parametrize("record, reason", [
    ({"questionId": 1, "question": "q?", "image": "documents/a.png"}, "missing_field"),
    ({"questionId": 1, "question": "q?", "image": "documents/a.png", "answers": "x"}, "bad_type"),
    ({"questionId": 1, "question": "q?", "image": "documents/a.png", "answers": ["", 3]}, "empty_answer"),
    ({"questionId": 1, "question": "q?", "answers": ["x"]}, "missing_field"),
    ("just a string", "bad_type"),
])
def test_docvqa_problems(tmp_path, record, reason):
    [p] = read("docvqa", tmp_path, [write(tmp_path, "d.json", {"data": [record]})])
    assert isinstance(p, Problem) and p.reason == reason and p.detail.startswith("d.json record 0: ")


def test_chartqa_question_ids_are_file_and_position(tmp_path):
    name = write(tmp_path, "train_augmented.json", [
        {"imgname": "a.png", "query": "q?", "label": "1"}, {"imgname": "a.png", "query": "q2?"}])
    out = read("chartqa", tmp_path, [name])
    assert out[0] == Problem("train_augmented/1", "missing_field", "train_augmented.json record 1: no 'label'")
    assert out[1].meta == {"split_file": "train_augmented", "question_ids": ["train_augmented/0"]}
