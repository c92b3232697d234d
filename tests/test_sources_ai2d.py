"""AI2D adapter: the real `questions/0.png.json` becomes the exact lettered multiple-choice conversation;
`abcLabel` picks the image folder; string `correctAnswer` is coerced; bad questions are problems; the
exclusion file turns test questions into counted `excluded` problems.

Run: pytest tests/test_sources_ai2d.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from imp_data.core.errors import SourceFormatError
from imp_data.sources.base import Candidate, Problem
from imp_data.sources.registry import get_adapter
from tests.source_support import SAMPLES

MC = "Answer with the option's letter from the given choices directly."


def read(root: Path, **options) -> list:
    a = get_adapter("ai2d")
    return list(a.read(root, a.default_files, a.parse_options(options)))


def question_file(root: Path, image: str, questions) -> None:
    (root / "questions").mkdir(parents=True, exist_ok=True)
    (root / "questions" / f"{image}.json").write_text(json.dumps({"imageName": image, "questions": questions}))


def q(qid: str, answer, abc: bool = False, options=("larva", "pupa", "adult", "egg")) -> dict:
    return {"abcLabel": abc, "answerTexts": list(options), "correctAnswer": answer, "questionId": qid}


@pytest.fixture
def sample_root(tmp_path) -> Path:
    (tmp_path / "questions").mkdir()
    shutil.copy(SAMPLES / "ai2d_0.json", tmp_path / "questions" / "0.png.json")
    return tmp_path


def test_real_question_file(sample_root):
    assert read(sample_root) == [Candidate(
        "abc_images/0.png", "abc_images/0.png",
        [{"from": "human", "value": f"<image>\nWhat is A in the diagram?\nA. ears\nB. nose\nC. mouth\nD. face\n{MC}"},
         {"from": "gpt", "value": "D"},
         {"from": "human", "value": "What is B in the diagram?\nA. face\nB. mouth\nC. nose\nD. ears"},
         {"from": "gpt", "value": "D"}],
        {"abc_label": True, "question_ids": ["0.png-0", "0.png-1"]},
        "questions/0.png.json question 'What is A in the diagram?'",
    )]


def test_real_question_file_one_record_per_question(sample_root):
    out = read(sample_root, group_by_image=False, prompt=None)
    assert out[1] == Candidate(
        "0.png-1", "abc_images/0.png",
        [{"from": "human", "value": "<image>\nWhat is B in the diagram?\nA. face\nB. mouth\nC. nose\nD. ears"},
         {"from": "gpt", "value": "D"}],
        {"abc_label": True, "question_ids": ["0.png-1"]},
        "questions/0.png.json question 'What is B in the diagram?'",
    )


def test_string_index_and_image_folder_per_abc_label(tmp_path):
    question_file(tmp_path, "5.png", {"Which stage comes after A?": q("5.png-0", "1", abc=True),
                                      "What comes last?": q("5.png-1", 3)})
    out = read(tmp_path)
    assert [(c.image, c.conversations[1]["value"]) for c in out] == [("abc_images/5.png", "B"), ("images/5.png", "D")]


@pytest.mark.parametrize("question, reason", [
    (q("7.png-0", 4), "bad_answer"),
    (q("7.png-0", -1), "bad_answer"),
    (q("7.png-0", "b"), "bad_type"),
    (q("7.png-0", 1.5), "bad_type"),
    (q("7.png-0", True), "bad_type"),
    (q("7.png-0", None), "missing_field"),
    ({**q("7.png-0", 1), "answerTexts": "larva"}, "bad_type"),
    ({**q("7.png-0", 1), "abcLabel": "yes"}, "bad_type"),
])
def test_bad_question_is_a_problem(tmp_path, question, reason):
    question_file(tmp_path, "7.png", {"What?": question, "Fine?": q("7.png-1", 0)})
    out = read(tmp_path)
    assert out[0] == Problem("7.png-0", reason, out[0].detail)
    assert out[0].detail.startswith("questions/7.png.json question 'What?': ")
    assert [c.meta["question_ids"] for c in out[1:]] == [["7.png-1"]]


def test_missing_question_id_and_bad_files(tmp_path):
    question_file(tmp_path, "8.png", {"What?": {"abcLabel": False, "answerTexts": ["a"], "correctAnswer": 0}})
    question_file(tmp_path, "9.png", {})
    (tmp_path / "questions" / "10.png.json").write_text(json.dumps({"imageName": "10.png"}))
    out = read(tmp_path)
    assert [(p.source_id, p.reason) for p in out] == [
        ("10.png", "missing_field"), ("@questions/8.png.json:What?", "missing_field"), ("9.png", "no_questions")]


def test_wrong_top_level_type_raises_with_the_file(tmp_path):
    (tmp_path / "questions").mkdir()
    (tmp_path / "questions" / "1.png.json").write_text("[1, 2]")
    with pytest.raises(SourceFormatError, match=r"1\.png\.json: expected a JSON object"):
        read(tmp_path)


def test_exclusion_file_counts_excluded_questions(sample_root):
    question_file(sample_root, "3.png", {"What comes last?": q("3.png-0", 3)})
    (sample_root / "test_ids.txt").write_text("# AI2D test questions\n0.png-1\n\n3.png  # a whole image\n")
    out = read(sample_root, exclude_file="test_ids.txt")
    assert [(r.source_id, r.reason) for r in out if isinstance(r, Problem)] == [
        ("0.png-1", "excluded"), ("3.png-0", "excluded")]
    [kept] = [r for r in out if isinstance(r, Candidate)]
    assert kept.meta["question_ids"] == ["0.png-0"] and len(kept.conversations) == 2


def test_missing_exclusion_file_names_the_option(sample_root):
    with pytest.raises(SourceFormatError, match="exclude_file"):
        read(sample_root, exclude_file="nope.txt")
