"""imp_data.eval.metrics against the official behaviours docs/eval.md quotes, asserted literally: the vqaEval
normalisation pairs (§3.4-§3.6), VQAv2 floats bit for bit (§3.2), the EvalAI processor (§4), TextVQA (§8.3),
the POPE parse and metrics with pairing by id (§9), the ScienceQA parser table (§7.2), GQA (§5), MME acc+
(§10), circular MMBench (§11) and the zero-denominator departures (§15.9).

Run: pytest tests/test_eval_metrics.py
"""

import random

import pytest

from imp_data.eval import metrics as m

# ---- VQAv2 normalisation (§3.4, §3.5, §3.6) --------------------------------------------------------------

VQA_NORMALIZE = {
    # numbers with commas and periods
    "1,000": "1000", "1, 000": "1 000", "1.000": "1.000", "3.5": "3.5", "3,5": "35", "3.5.": "3.5", "3. 5": "3 5",
    "3 .5": "3 .5", ".5": ".5", "5.": "5", "2,000.5": "2000.5", "3..5": "3.5",
    # the digit-comma-digit trigger deletes every listed character
    "1,000 t-shirts": "1000 tshirts", "5,5,5-5": "5555", "t-shirt": "t shirt",
    # hyphens, periods, slashes
    "fifty-two": "fifty 2", "well-known -x": "wellknown x", "-1": "1", "c++": "c", "u.s.a.": "usa",
    "www.google.com": "wwwgooglecom", "a.apple": "aapple", "1.a": "1a", "no.5": "no.5",
    # articles after punctuation
    "n/a": "n", "a,b": "b", "1,a": "1", "U. S. A.": "u s", "A B C": "b c", "a -b": "b",
    # number words
    "none": "0", "no one": "no 1", "one half": "1 half", "eleven": "eleven", "fifty": "fifty", "one's": "one's",
    # left alone
    "it's": "it's", "dog's": "dog's", "12:30": "12:30", "$5": "$5", "100%": "100%", "#1": "#1", "a&w": "a&w",
    # the 32-period cap
    "." * 35: "...", "." * 33: ".", "a." * 34: "a" * 33 + ".a.",
    # whitespace inside
    "yes\nno": "yes no", "yes\u00a0no": "yes no", "yes\u3000no": "yes no",
    # contraction table and its oddities (§3.4)
    "dont": "don't", "cant": "can't", "whats": "what's", "youre": "you're", "oclock": "o'clock", "yall": "y'all",
    "twas": "'twas", "maam": "ma'am", "somebody'd": "somebodyd", "Im": "im", "its": "its", "shes": "shes",
    "lets": "lets", "ive": "ive",
    # Python 3 semantics (§3.6)
    "İstanbul": "i\u0307stanbul", "٣,٥": "٣٥", "3.٥": "3.٥",
}


@pytest.mark.parametrize("text, expected", list(VQA_NORMALIZE.items()))
def test_normalize_vqa_answer(text, expected):
    assert m.normalize_vqa_answer(text) == expected


# ---- VQAv2 accuracy (§3.2, §15.2) ------------------------------------------------------------------------


def _gts(positions, hit="cat", miss="dog"):
    return [hit if i in positions else miss for i in range(10)]


def test_vqa_accuracy_unanimity_shortcut():
    assert m.vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    assert m.vqa_accuracy("yes.", ["yes"] * 10) == 0.0
    assert m.vqa_accuracy("two", ["2"] * 10) == 0.0
    assert m.vqa_accuracy("1000", ["1,000"] * 10) == 0.0
    assert m.vqa_accuracy("yes", ["yes"] * 10) == 1.0
    assert m.vqa_accuracy("Yes", ["yes"] * 9 + ["Yes"]) == 1.0
    assert m.vqa_accuracy("Yes", ["yes"] * 9 + [" yes"]) == 0.0  # unanimous after the strip


@pytest.mark.parametrize("positions, expected", [
    ((), 0.0), ((0,), 0.3), ((9,), 0.3), ((0, 1), 0.6), ((3, 4), 0.6000000000000001), ((7, 8), 0.5999999999999999),
    ((8, 9), 0.5999999999999999), ((0, 1, 2), 0.9), ((0, 1, 9), 0.8999999999999998), ((0, 1, 2, 3), 1.0),
    (tuple(range(9)), 1.0),
])
def test_vqa_accuracy_official_floats(positions, expected):
    assert repr(m.vqa_accuracy("cat", _gts(positions))) == repr(expected)


def test_vqa_accuracy_normalises_when_not_unanimous_and_empty_gts():
    assert m.vqa_accuracy("Two", ["2", "2", "2", "2", "two"] + ["3"] * 5) == 1.0
    assert m.vqa_accuracy("the dog's", ["dog's"] * 5 + ["dog"] * 5) == 1.0
    assert m.vqa_accuracy("x", []) == 0.0  # official: ZeroDivisionError


def test_evalai_processing_before_vqa_scoring_hurts():
    """§4.3: possessives and comma answers lose their match once processed."""
    assert m.vqa_accuracy(m.normalize_evalai_answer("the dog's"), ["dog's"] * 5 + ["dog"] * 5) == 0.0
    assert m.vqa_accuracy("a,b", ["a,b"] * 5 + ["c"] * 5) == 1.0
    assert m.vqa_accuracy(m.normalize_evalai_answer("a,b"), ["a,b"] * 5 + ["c"] * 5) == 0.0


# ---- EvalAI processor and TextVQA (§4, §8.3, §15.3-§15.4) -----------------------------------------------

EVALAI = {
    "black,white": "blackwhite", "a,b": "ab", "what?ever": "whatever", "don't,know": "don'tknow",
    "dog's": "dog 's", "it's": "it 's", "what's": "what 's", "let's go": "let 's go", "IT'S": "it 's",
    "whats": "what's", "1,000 t-shirts": "1000 t shirts", "5,5,5-5": "555 5", "1,000": "1000", "3.5": "3.5",
    "fifty-two": "fifty 2", "none": "0", "n/a": "n", "." * 33: ".", "İstanbul": "i\u0307stanbul",
}


@pytest.mark.parametrize("text, expected", list(EVALAI.items()))
def test_normalize_evalai_answer(text, expected):
    assert m.normalize_evalai_answer(text) == expected


def test_textvqa_accuracy():
    assert m.textvqa_accuracy("Yes", ["yes"] * 10) == 1.0  # no unanimity shortcut
    what = ["what's"] * 5 + ["x"] * 5
    assert m.textvqa_accuracy("whats", what) == 0.0
    assert m.vqa_accuracy("whats", what) == 1.0  # the same input under VQAEval (§8.3)
    assert repr(m.textvqa_accuracy("Cat", _gts((7, 8)))) == "0.5999999999999999"
    assert repr(m.textvqa_accuracy("cat", _gts((0, 1, 9)))) == "0.8999999999999998"
    assert m.textvqa_accuracy("bird", _gts((0,))) == 0.0


@pytest.mark.parametrize("n", [0, 9, 11])
def test_textvqa_needs_ten_answers(n):
    with pytest.raises(ValueError, match="10"):
        m.textvqa_accuracy("a", ["a"] * n)


# ---- POPE (§9, §15.5-§15.6) ------------------------------------------------------------------------------

POPE = {
    "Yes, there is no doubt.": "no", "Yes, but it is not clearly visible.": "no", "Yes no": "no",
    "No\nThere is no dog": "no", "NO": "yes", "NO.": "yes", "Not sure": "yes", "Not visible": "yes", "Nope": "yes",
    "None": "yes", "I don't think so": "yes", "There is nothing.": "yes", "Unknown": "yes", "": "yes",
    "no!": "yes", "no\n": "yes", "no; nothing": "yes", ".No": "yes", "No,there is none.": "yes", "Yes\nNo": "yes",
    "yes": "yes", "no": "no", "No": "no", "No.": "no",
}


@pytest.mark.parametrize("text, expected", list(POPE.items()))
def test_parse_pope_answer(text, expected):
    assert m.parse_pope_answer(text) == expected
    assert m.parse_pope_answer(m.parse_pope_answer(text)) == expected  # idempotent on yes/no


def test_pope_metrics_formulas():
    # TP=3 (parsed yes, positive), FP=1, TN=2, FN=1 ("Yes, there is no doubt." parses as no)
    preds = ["Yes", "yes.", "Yes, it is", "Yes", "No", "no", "Yes, there is no doubt."]
    labels = ["yes", "yes", "yes", "no", "no", "no", "yes"]
    got = m.pope_metrics(preds, labels)
    precision, recall = 3 / 4, 3 / 4
    assert got == {"accuracy": 5 / 7, "precision": precision, "recall": recall,
                   "f1": 2 * precision * recall / (precision + recall), "yes_ratio": 4 / 7}


def test_pope_metrics_zero_denominators():
    zero = {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "yes_ratio": 0.0}
    assert m.pope_metrics([], []) == zero
    no_yes = m.pope_metrics(["No", "no"], ["yes", "no"])  # no yes prediction, TP = 0
    assert (no_yes["precision"], no_yes["recall"], no_yes["f1"], no_yes["accuracy"]) == (0.0, 0.0, 0.0, 0.5)
    no_pos = m.pope_metrics(["Yes", "no"], ["no", "no"])  # no positive label
    assert (no_pos["precision"], no_pos["recall"], no_pos["f1"], no_pos["yes_ratio"]) == (0.0, 0.0, 0.0, 0.5)
    with pytest.raises(ValueError, match="question id"):
        m.pope_metrics(["yes"], [])


def test_pope_by_id_ignores_answer_order():
    rng = random.Random(7)
    ids = [f"q{i}" for i in range(40)]
    labels = {q: rng.choice(["yes", "no"]) for q in ids}
    preds = {q: rng.choice(["Yes", "No", "Yes, there is no doubt.", "NO", "no."]) for q in ids}
    ordered = m.pope_metrics([preds[q] for q in ids], [labels[q] for q in ids])
    shuffled_ids = ids[:]
    rng.shuffle(shuffled_ids)
    shuffled_preds = {q: preds[q] for q in shuffled_ids}
    assert list(shuffled_preds) != ids
    assert m.pope_metrics_by_id(shuffled_preds, labels) == ordered
    assert m.pope_metrics_by_id(preds, labels) == ordered
    with pytest.raises(ValueError, match="q3"):
        m.pope_metrics_by_id({q: p for q, p in preds.items() if q != "q3"}, labels)
    with pytest.raises(ValueError, match="extra"):
        m.pope_metrics_by_id({**preds, "extra": "Yes"}, labels)


# ---- ScienceQA (§7.2-§7.3, §15.7-§15.8) ------------------------------------------------------------------

SQA = {
    "A": "A", "A.": None, "A ": None, "A\n": None, "a": None, "(A)": None, "A)": None, "C.cat": None,
    "C.\tx": None, "A. ": "A", "C. ": "C", "B. The answer is C.": "B", "The answer is C": None,
    "The answer is C.": "C", "The answer is D!": "D", "The answer is D ": "D", "The answer is B)": "B",
    "The answer is AB.": "A", "The answer is A. The answer is A.": None, "The answer is B. The answer is b.": "B",
    "The answer is B.\nThe answer is B": "B", "The answer is  B.": None, "the answer is A.": None,
    "I think the answer is D.": None, "The answer is Z.": "Z", "E": "E", "F": None, "AB": None, "": None,
    None: None,
}


@pytest.mark.parametrize("text, expected", list(SQA.items()))
def test_parse_scienceqa_letter(text, expected):
    assert m.parse_scienceqa_letter(text) == expected


def test_scienceqa_correct():
    assert m.scienceqa_correct("E", 3, 4) is False  # beyond the 3 choices: pred_idx -1
    assert m.scienceqa_correct("E", 5, 4) is True
    assert m.scienceqa_correct("The answer is Z.", 5, 0) is False
    assert m.scienceqa_correct("B. The answer is C.", 3, 1) is True
    assert m.scienceqa_correct("B. The answer is C.", 3, 2) is False
    assert m.scienceqa_correct("A.", 3, 0) is False
    assert m.scienceqa_correct(None, 3, 0) is False
    for text in ("The answer is C.", "C. ", "C"):  # an already-extracted letter scores the same
        assert m.scienceqa_correct(text, 4, 2) == m.scienceqa_correct(m.parse_scienceqa_letter(text), 4, 2) is True


# ---- GQA (§5) --------------------------------------------------------------------------------------------


def test_gqa_exact_match():
    assert m.gqa_exact_match("Yes.", "yes")
    assert m.gqa_exact_match("on the left...", "on the left")
    assert m.gqa_exact_match("U.S.", "u.s")
    assert not m.gqa_exact_match(" yes", "yes")  # no strip
    assert not m.gqa_exact_match("the dog", "dog")  # no other normalisation


# ---- MME (§10) -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("Yes", "yes"), ("no", "no"), ("Yes, there is.", "yes"), ("Nope", "no"), ("Not at all", "no"),
    ("I think yes", "other"), ("  yes", "other"), ("ayes", "yes"), ("", "other")])
def test_parse_mme_answer(text, expected):
    assert m.parse_mme_answer(text) == expected


def _mme(category, image, pred, gold):
    return {"category": category, "image": image, "prediction": pred, "answer": gold}


def test_mme_acc_plus_needs_both_questions_of_an_image():
    rows = [_mme("count", "1", "Yes", "Yes"), _mme("count", "1", "No", "No"),  # both right
            _mme("count", "2", "Yes", "Yes"), _mme("count", "2", "Yes", "No"),  # one right
            _mme("count", "3", "Maybe", "Yes"), _mme("count", "3", "No", "No"),  # "other" is wrong
            _mme("OCR", "1", "No", "Yes"), _mme("OCR", "1", "no", "No"),
            _mme("code_reasoning", "1", "Yes", "Yes"), _mme("code_reasoning", "1", "No", "No")]
    got = m.mme_scores(rows)
    count = got["categories"]["count"]
    assert (count["acc"], count["acc_plus"]) == (4 / 6 * 100, 1 / 3 * 100)
    assert count["score"] == 4 / 6 * 100 + 1 / 3 * 100
    assert got["categories"]["OCR"] == {"acc": 50.0, "acc_plus": 0.0, "score": 50.0}
    assert got["perception"] == count["score"] + 50.0  # cognition subtasks stay out of perception
    assert got["cognition"] == 200.0
    # same image name in another category is another image
    assert m.mme_scores(rows[:2] + [_mme("OCR", "1", "Yes", "Yes"), _mme("OCR", "1", "No", "No")])["perception"] == 400
    assert m.mme_scores([]) == {"categories": {}, "perception": 0.0, "cognition": 0.0}


def test_mme_rejects_an_image_without_two_questions():
    with pytest.raises(ValueError, match="exactly 2"):
        m.mme_scores([_mme("count", "1", "Yes", "Yes")])


# ---- MMBench (§11) ---------------------------------------------------------------------------------------

OPTS = ["cat", "dog", "bird"]


@pytest.mark.parametrize("pred, expected", [
    ("B", "B"), ("(C) bird", "C"), ("The answer is B.", "B"), ("B. dog", "B"),
    ("A and B", None),  # two letters, and the option texts are absent
    ("A cute dog is shown", "B"),  # "A" with > 3 tokens may be the article: falls back to the text match
    ("A dog", "A"),  # <= 3 tokens: the letter wins
    ("It is a bird", "C"), ("cat or dog", None), ("D", None),  # D is not an option here
    ("Z", "Z"), ("Cannot determine the answer", "Z"), ("Failed to obtain answer via API dog", "B")])
def test_mmbench_letter(pred, expected):
    assert m.mmbench_letter(pred, OPTS) == expected


def _mmb(index, pred, answer, options=OPTS):
    return {"index": index, "prediction": pred, "answer": answer, "options": options}


def test_mmbench_circular_every_rotation_must_be_right():
    rows = [_mmb(0, "A", "A"), _mmb(1_000_000, "C", "C"), _mmb(2_000_000, "B", "B"),  # q0: all right
            _mmb(1, "B", "B"), _mmb(1_000_001, "A", "A"), _mmb(2_000_001, "A", "C"),  # q1: last rotation wrong
            _mmb(2, "dog", "B"), _mmb(1_000_002, "dog", "A", ["dog", "bird", "cat"]),  # q2: by option text
            _mmb(3, "I cannot tell", "A")]  # q3: nothing extracted -> wrong
    assert m.mmbench_circular_accuracy(rows) == 0.5
    assert m.mmbench_circular_accuracy(list(reversed(rows))) == 0.5
    assert m.mmbench_circular_accuracy(rows[3:6]) == 0.0
    assert m.mmbench_circular_accuracy([]) == 0.0
