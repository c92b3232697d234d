"""Metric functions against the official behaviours EVAL.md quotes (§3.5, §4.2, §7.2, §9.2, §15), asserted
literally, plus POPE pairing by id, circular MMBench and MME acc+.

Run: pytest tests/test_eval_metrics.py
"""

import pytest

from imp_data.eval import metrics as m

VQA_NORMALIZE = {
    "1,000": "1000", "1, 000": "1 000", "1.000": "1.000", "3.5": "3.5", "3,5": "35", "3.5.": "3.5", "3. 5": "3 5",
    "3 .5": "3 .5", ".5": ".5", "5.": "5", "2,000.5": "2000.5", "3..5": "3.5", "1,000 t-shirts": "1000 tshirts",
    "5,5,5-5": "5555", "t-shirt": "t shirt", "fifty-two": "fifty 2", "well-known -x": "wellknown x", "-1": "1",
    "c++": "c", "u.s.a.": "usa", "www.google.com": "wwwgooglecom", "a.apple": "aapple", "1.a": "1a", "no.5": "no.5",
    "n/a": "n", "a,b": "b", "1,a": "1", "U. S. A.": "u s", "A B C": "b c", "a -b": "b", "none": "0", "no one": "no 1",
    "one half": "1 half", "it's": "it's", "dog's": "dog's", "12:30": "12:30", "$5": "$5", "100%": "100%", "#1": "#1",
    "a&w": "a&w", "." * 35: "...", "." * 33: ".", "a." * 34: "a" * 33 + ".a.", "yes\nno": "yes no",
    "yes\u00a0no": "yes no", "yes\u3000no": "yes no", "dont": "don't", "Im": "im", "somebody'd": "somebodyd",
    "eleven": "eleven",
}


@pytest.mark.parametrize("text, expected", list(VQA_NORMALIZE.items()))
def test_normalize_vqa_answer(text, expected):
    assert m.normalize_vqa_answer(text) == expected


def test_vqa_accuracy_official_floats():
    assert m.vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    assert m.vqa_accuracy("yes.", ["yes"] * 10) == 0.0
    assert m.vqa_accuracy("two", ["2"] * 10) == 0.0
    assert m.vqa_accuracy("1000", ["1,000"] * 10) == 0.0
    assert m.vqa_accuracy("Yes", ["yes"] * 9 + ["Yes"]) == 1.0
    assert m.vqa_accuracy("Yes", ["yes"] * 9 + [" yes"]) == 0.0
    for k, value in ((0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0)):
        assert m.vqa_accuracy("cat", ["cat"] * k + ["dog"] * (10 - k)) == pytest.approx(value, abs=1e-12)
    floats = {m.vqa_accuracy("cat", gts) for gts in (["cat", "cat"] + ["dog"] * 8, ["dog"] * 8 + ["cat", "cat"],
                                                     ["dog"] * 4 + ["cat", "cat"] + ["dog"] * 4)}
    assert floats <= {0.6, 0.5999999999999999, 0.6000000000000001}
    assert m.vqa_accuracy("x", []) == 0.0


EVALAI = {"black,white": "blackwhite", "a,b": "ab", "dog's": "dog 's", "IT'S": "it 's", "whats": "what's",
          "1,000 t-shirts": "1000 t shirts", "5,5,5-5": "555 5", "n/a": "n", "what?ever": "whatever",
          "let's go": "let 's go", "1,000": "1000", "3.5": "3.5", "fifty-two": "fifty 2", "none": "0",
          "İstanbul": "i̇stanbul"}


@pytest.mark.parametrize("text, expected", list(EVALAI.items()))
def test_normalize_evalai_answer(text, expected):
    assert m.normalize_evalai_answer(text) == expected


def test_textvqa_accuracy():
    assert m.textvqa_accuracy("Yes", ["yes"] * 10) == 1.0
    assert m.textvqa_accuracy("whats", ["what's"] * 5 + ["x"] * 5) == 0.0
    with pytest.raises(ValueError):
        m.textvqa_accuracy("a", ["a"] * 9)


POPE = {"Yes, there is no doubt.": "no", "Yes, but it is not clearly visible.": "no", "Yes no": "no",
        "No\nThere is no dog": "no", "NO": "yes", "NO.": "yes", "Not sure": "yes", "Nope": "yes", "None": "yes",
        "I don't think so": "yes", "Unknown": "yes", "": "yes", "no!": "yes", "no\n": "yes", "no; nothing": "yes",
        ".No": "yes", "No,there is none.": "yes", "Yes\nNo": "yes", "yes": "yes", "no": "no"}


@pytest.mark.parametrize("text, expected", list(POPE.items()))
def test_parse_pope_answer(text, expected):
    assert m.parse_pope_answer(text) == expected


def test_pope_metrics_zero_denominators_and_pairing():
    r = m.pope_metrics(["yes", "no", "yes", "no"], ["yes", "no", "no", "yes"])
    assert r == {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "yes_ratio": 0.5}
    assert m.pope_metrics(["no"], ["yes"])["precision"] == 0.0
    assert m.pope_metrics([], [])["accuracy"] == 0.0
    with pytest.raises(ValueError):
        m.pope_metrics(["yes"], [])
    preds = {1: "Yes", 2: "No", 3: "yes", 4: "no"}
    labels = {1: "yes", 2: "no", 3: "no", 4: "yes"}
    shuffled = dict(reversed(list(preds.items())))
    assert m.pope_metrics_by_id(preds, labels) == m.pope_metrics_by_id(shuffled, dict(reversed(list(labels.items()))))


SQA = {"A": "A", "A.": None, "A ": None, "A\n": None, "a": None, "(A)": None, "A)": None, "C.cat": None,
       "C.\tx": None, "A. ": "A", "C. ": "C", "B. The answer is C.": "B", "The answer is C": None,
       "The answer is C.": "C", "The answer is D!": "D", "The answer is D ": "D", "The answer is B)": "B",
       "The answer is AB.": "A", "The answer is A. The answer is A.": None, "The answer is B. The answer is b.": "B",
       "The answer is B.\nThe answer is B": "B", "The answer is  B.": None, "the answer is A.": None,
       "I think the answer is D.": None, "The answer is Z.": "Z", "AB": None, "": None}


@pytest.mark.parametrize("text, expected", list(SQA.items()))
def test_parse_scienceqa_letter(text, expected):
    assert m.parse_scienceqa_letter(text) == expected


def test_scienceqa_correct():
    assert not m.scienceqa_correct("E", 3, 4)
    assert not m.scienceqa_correct("The answer is Z.", 5, 0)
    assert m.scienceqa_correct("B. The answer is C.", 3, 1)
    assert not m.scienceqa_correct(None, 3, 0)


def test_gqa_mmbench_mme():
    assert m.gqa_exact_match("Yes.", "yes") and m.gqa_exact_match("on the left...", "on the left")
    assert not m.gqa_exact_match(" yes", "yes")
    rows = [{"index": 0, "prediction": "A", "answer": "A", "options": ["x", "y"]},
            {"index": 1_000_000, "prediction": "B", "answer": "B", "options": ["y", "x"]},
            {"index": 1, "prediction": "A", "answer": "A", "options": ["p", "q"]},
            {"index": 1_000_001, "prediction": "A", "answer": "B", "options": ["q", "p"]}]
    assert m.mmbench_circular_accuracy(rows) == 0.5  # question 1 fails one rotation
    mme = m.mme_scores([
        {"category": "count", "image": "1", "prediction": "Yes", "answer": "Yes"},
        {"category": "count", "image": "1", "prediction": "No", "answer": "No"},
        {"category": "count", "image": "2", "prediction": "Yes", "answer": "Yes"},
        {"category": "count", "image": "2", "prediction": "Yes", "answer": "No"}])
    assert mme["categories"]["count"] == {"acc": 75.0, "acc_plus": 50.0, "score": 125.0}
    assert mme["perception"] == 125.0
