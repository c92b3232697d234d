"""Benchmark metrics reproducing the official scripts bit for bit, quirks included (docs/eval.md §3-§11, §15).

Every function is pure. The one design choice: official behaviour is kept exactly on well-formed input (the
VQAEval unanimity shortcut, the 32-period cap, POPE's token parse, ScienceQA's regex with its any-character
dot, float sums in annotation order), and the project departs only where the official code crashes or relies
on file order (docs/eval.md §15.9):

1. POPE pairs predictions and labels by question id (`pope_metrics_by_id`); unequal lengths are a ValueError
   instead of `zip` truncation.
2. Zero denominators give 0.0 instead of ZeroDivisionError (POPE metrics, VQAv2 with no GTs, MME/MMBench with
   no rows).
3. VQAv2 leave-one-out excludes by position (identical to the official dict comparison on real annotations).
4. Python 3 semantics for U+0130 and non-ASCII digits (§3.6).
5. TextVQA GT lists without exactly 10 answers are a ValueError (an assertion upstream).
MME pairs the two questions of an image by (category, image) rather than by consecutive file lines, for the
same reason as POPE.
"""

from __future__ import annotations

import re
from collections import defaultdict

from imp_data.eval.vqa_normalize import pre_step, process_digit_article, process_punctuation

SQA_LETTERS = "ABCDE"
# Case-sensitive; the final "." is the regex any-character (not newline), as upstream.
_SQA_ANSWER = re.compile(r"The answer is ([A-Z]).")
_POPE_NO = ("No", "not", "no")
MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
                  "artwork", "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
_MMB_STRIP = ".()[],:;!*#{}"
_MMB_REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
                 "I'm sorry, but without the image provided", "Cannot determine the answer")


def _ratio(num: float, den: float) -> float:
    """num/den, or 0.0 where the official code would raise ZeroDivisionError (docs/eval.md §15.9 item 2)."""
    return num / den if den else 0.0


# ---- VQAv2 / VizWiz (vqaEval.py) -------------------------------------------------------------------------


def normalize_vqa_answer(text: str) -> str:
    """The full vqaEval normalisation: whitespace pre-step, processPunctuation, processDigitArticle (§15.1).

    Example:
        >>> normalize_vqa_answer("1,000"), normalize_vqa_answer("U. S. A."), normalize_vqa_answer("3..5")
        ('1000', 'u s', '3.5')
    """
    return process_digit_article(process_punctuation(pre_step(text)))


def _leave_one_out(answers: list[str], target: str) -> float:
    """Mean over positions i of min(1, #{j != i: answers[j] == target}/3), summed left to right.

    The sum order is what makes the official floats (0.5999999999999999 for matches at the end of the list,
    0.6000000000000001 in the middle), so it must stay a plain in-order loop.
    """
    matches = sum(1 for a in answers if a == target)
    total = 0
    for a in answers:
        total += min(1, float(matches - (a == target)) / 3)
    return total / len(answers)


def vqa_accuracy(pred: str, gts: list[str]) -> float:
    """Official VQAv2 per-question accuracy in [0, 1], float-identical to `VQAEval.evaluate` (§3.2, §15.2).

    The prediction and the GTs are normalised only when the stripped GTs are not all identical (the
    unanimity shortcut of the 2021 HEAD): 10 x "yes" vs "Yes" scores 0.0.

    Args:
        pred: The model answer (VizWiz/VQAv2 uploads pass it through `normalize_evalai_answer` first).
        gts: The human answers in annotation order (10 in VQAv2).

    Returns:
        The raw accuracy (not x100, not rounded); 0.0 for an empty `gts` (official: ZeroDivisionError).

    Example:
        >>> vqa_accuracy("Yes", ["yes"] * 10), vqa_accuracy("Yes", ["yes"] * 9 + ["Yes"])
        (0.0, 1.0)
    """
    if not gts:
        return 0.0
    answers = [pre_step(g) for g in gts]
    pred = pre_step(pred)
    if len(set(answers)) > 1:
        answers = [process_digit_article(process_punctuation(a)) for a in answers]
        pred = process_digit_article(process_punctuation(pred))
    return _leave_one_out(answers, pred)


# ---- TextVQA (m4c_evaluator.py) ---------------------------------------------------------------------------


def normalize_evalai_answer(text: str) -> str:
    """LLaVA's `EvalAIAnswerProcessor` (§4.1, §15.3): commas and "?" deleted, "'s" split off, then the vqaEval
    punctuation and digit/article rules (whose comma trigger can no longer fire).

    Example:
        >>> normalize_evalai_answer("black,white"), normalize_evalai_answer("IT'S")
        ('blackwhite', "it 's")
    """
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text, comma_trigger=False))


def textvqa_accuracy(pred: str, gts: list[str]) -> float:
    """The m4c `TextVQAAccuracyEvaluator` score of one question, in [0, 1] (§8.3, §15.4).

    Always normalises (no unanimity shortcut). A prediction equal to some normalised GT u scores the
    leave-one-out mean for u, otherwise 0.0.

    Raises:
        ValueError: `gts` does not hold exactly 10 answers (the official code fails an assertion).

    Example:
        >>> textvqa_accuracy("Yes", ["yes"] * 10), textvqa_accuracy("whats", ["what's"] * 5 + ["x"] * 5)
        (1.0, 0.0)
    """
    if len(gts) != 10:
        raise ValueError(f"TextVQA needs exactly 10 GT answers per question, got {len(gts)}")
    answers = [normalize_evalai_answer(g) for g in gts]
    target = normalize_evalai_answer(pred)
    return _leave_one_out(answers, target) if target in answers else 0.0


# ---- POPE (eval_pope.py) ----------------------------------------------------------------------------------


def parse_pope_answer(text: str) -> str:
    """The `eval_pope.py` parse (§9.2, §15.5): "no" iff a space-split token of the text before the first
    period, commas deleted, is exactly "No", "not" or "no"; otherwise "yes".

    Example:
        >>> parse_pope_answer("Yes, there is no doubt."), parse_pope_answer("NO"), parse_pope_answer(".No")
        ('no', 'yes', 'yes')
    """
    tokens = text.split(".")[0].replace(",", "").split(" ")
    return "no" if any(t in _POPE_NO for t in tokens) else "yes"


def pope_metrics(preds: list[str], labels: list[str]) -> dict[str, float]:
    """POPE accuracy/precision/recall/f1/yes_ratio as unrounded fractions (§9.3, §15.6).

    Args:
        preds: Model outputs (or already-parsed "yes"/"no"), each parsed with `parse_pope_answer`.
        labels: Gold labels aligned with `preds`; "no" is negative, anything else positive.

    Returns:
        {"accuracy", "precision", "recall", "f1", "yes_ratio"}; each is 0.0 where the official code divides by
        zero (no yes prediction, no positive label, TP = 0, no pairs).

    Raises:
        ValueError: the lengths differ (the official `zip` would silently truncate).

    Example:
        >>> pope_metrics(["Yes", "No"], ["yes", "yes"])["recall"]
        0.5
    """
    if len(preds) != len(labels):
        raise ValueError(f"POPE: {len(preds)} predictions vs {len(labels)} labels; join them by question id "
                         "(pope_metrics_by_id) instead of by file order")
    tp = fp = tn = fn = 0
    for pred, label in zip(preds, labels):
        said_yes, is_pos = parse_pope_answer(pred) == "yes", label != "no"
        tp += said_yes and is_pos
        fp += said_yes and not is_pos
        tn += not said_yes and not is_pos
        fn += not said_yes and is_pos
    precision = _ratio(float(tp), float(tp + fp))
    recall = _ratio(float(tp), float(tp + fn))
    return {"accuracy": _ratio(tp + tn, tp + tn + fp + fn), "precision": precision, "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall), "yes_ratio": _ratio(tp + fp, len(preds))}


def pope_metrics_by_id(preds: dict, labels: dict) -> dict[str, float]:
    """`pope_metrics` over predictions and labels joined by question id, never by file position (§9.5).

    Args:
        preds: question id -> model output.
        labels: question id -> gold label, for one category.

    Raises:
        ValueError: the id sets differ (a missing prediction or an unlabelled one), naming a few ids.

    Example:
        >>> pope_metrics_by_id({2: "No", 1: "Yes"}, {1: "yes", 2: "no"})["accuracy"]
        1.0
    """
    missing, extra = set(labels) - set(preds), set(preds) - set(labels)
    if missing or extra:
        raise ValueError(f"POPE ids do not match: no prediction for {sorted(missing, key=str)[:5]}, "
                         f"no label for {sorted(extra, key=str)[:5]}; check the join key (docs/eval.md §9.5)")
    ids = list(labels)
    return pope_metrics([preds[i] for i in ids], [labels[i] for i in ids])


# ---- ScienceQA (eval_science_qa.py) -----------------------------------------------------------------------


def parse_scienceqa_letter(pred: str | None) -> str | None:
    """The letter the official parser extracts, or None where it reports FAILED (§7.2, §15.7). No strip.

    Example:
        >>> parse_scienceqa_letter("A. "), parse_scienceqa_letter("A."), parse_scienceqa_letter("The answer is AB.")
        ('A', None, 'A')
    """
    if pred is None:
        return None
    if len(pred) == 1 and pred in SQA_LETTERS:
        return pred
    if len(pred) >= 3 and pred[0] in SQA_LETTERS and pred[1:3] == ". ":
        return pred[0]
    found = _SQA_ANSWER.findall(pred)
    return found[0] if len(found) == 1 else None


def scienceqa_correct(pred: str | None, num_options: int, answer_index: int) -> bool:
    """True iff the parsed letter is among the first `num_options` of A-E and its index is `answer_index`.

    Example:
        >>> scienceqa_correct("E", 3, 4), scienceqa_correct("B. The answer is C.", 3, 1)
        (False, True)
    """
    letter = parse_scienceqa_letter(pred)
    return letter is not None and letter in SQA_LETTERS[:num_options] and SQA_LETTERS.index(letter) == answer_index


# ---- GQA --------------------------------------------------------------------------------------------------


def gqa_exact_match(pred: str, gold: str) -> bool:
    """GQA (§5): `convert_gqa_for_eval` keeps `pred.rstrip('.').lower()`, then eval.py compares it to the gold
    answer by exact string equality (UNVERIFIED: eval.py is known only from unofficial copies).

    Example:
        >>> gqa_exact_match("Yes.", "yes"), gqa_exact_match(" yes", "yes")
        (True, False)
    """
    return pred.rstrip(".").lower() == gold


# ---- MME (eval_tool/calculation.py) -----------------------------------------------------------------------


def parse_mme_answer(text: str) -> str:
    """calculation.py's parse of the lower-cased answer: "yes"/"no" exactly, else "yes" if "yes" is in its
    first 4 characters, else "no" if "no" is, else "other".

    Example:
        >>> parse_mme_answer("Yes, it is."), parse_mme_answer("Nope"), parse_mme_answer("  yes")
        ('yes', 'no', 'other')
    """
    text = text.lower()
    if text in ("yes", "no"):
        return text
    head = text[:4]
    return "yes" if "yes" in head else ("no" if "no" in head else "other")


def mme_scores(rows: list[dict]) -> dict:
    """MME per-subtask acc and acc+ in percent, score = acc + acc+, and the perception/cognition totals (§10).

    Args:
        rows: {"category", "image", "prediction", "answer"} per question; `answer` is the gold "Yes"/"No".

    Returns:
        {"categories": {cat: {"acc", "acc_plus", "score"}}, "perception": float, "cognition": float}; the
        totals sum the official subtask lists in official order over the subtasks present.

    Raises:
        ValueError: an image does not have exactly 2 questions (an assertion upstream).

    Example:
        >>> mme_scores([{"category": "OCR", "image": "a", "prediction": "Yes", "answer": "Yes"},
        ...             {"category": "OCR", "image": "a", "prediction": "Yes", "answer": "No"}])["perception"]
        50.0
    """
    images: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        right = parse_mme_answer(row["prediction"]) == row["answer"].lower()
        images[row["category"]][row["image"]].append(right)
    categories = {}
    for category, per_image in images.items():
        bad = [img for img, oks in per_image.items() if len(oks) != 2]
        if bad:
            raise ValueError(f"MME {category}: images {bad[:5]} do not have exactly 2 questions")
        answers = [ok for oks in per_image.values() for ok in oks]
        acc = float(sum(answers)) / len(answers)
        acc_plus = sum(all(oks) for oks in per_image.values()) / len(per_image)
        score = 0
        score += acc * 100  # upstream accumulates acc then acc+ into a 0-initialised total
        score += acc_plus * 100
        categories[category] = {"acc": acc * 100, "acc_plus": acc_plus * 100, "score": score}

    def total(names: tuple[str, ...]) -> float:
        out = 0.0
        for name in names:
            out += categories[name]["score"] if name in categories else 0
        return out

    return {"categories": categories, "perception": total(MME_PERCEPTION), "cognition": total(MME_COGNITION)}


# ---- MMBench (VLMEvalKit circular evaluation) -------------------------------------------------------------


def mmbench_letter(pred: str, options: list[str]) -> str | None:
    """VLMEvalKit's `can_infer` (option letter, then option text), without the ChatGPT judge (§11).

    Returns the letter, "Z" for a refusal, or None where VLMEvalKit would call its judge (counted wrong).

    Example:
        >>> mmbench_letter("B. dog", ["cat", "dog"]), mmbench_letter("a dog", ["cat", "dog"])
        ('B', 'B')
    """
    letters = [chr(65 + i) for i in range(len(options))]
    if "Failed to obtain answer via API" not in pred:
        if any(refusal in pred for refusal in _MMB_REFUSALS):
            return "Z"
        text = pred
        for ch in _MMB_STRIP:
            text = text.replace(ch, " ")
        tokens = text.split()
        found = [c for c in letters if c in tokens]
        if len(found) == 1 and not ("A" in tokens and len(tokens) > 3):  # "A" may be the article
            return found[0]
        if not found and "Z" in tokens:
            return "Z"
    lowered = pred.lower()
    hits = [c for c, opt in zip(letters, options) if str(opt).lower() in lowered]
    return hits[0] if len(hits) == 1 else None


def mmbench_circular_accuracy(rows: list[dict]) -> float:
    """Circular MMBench accuracy in [0, 1]: rows grouped by `index % 1e6`; a question counts only if every
    rotation's extracted letter equals that row's answer (§11).

    Args:
        rows: {"index", "prediction", "answer", "options"} per TSV row (rotated copies included).

    Returns:
        Correct groups / groups; 0.0 with no rows.

    Example:
        >>> mmbench_circular_accuracy([{"index": 0, "prediction": "A", "answer": "A", "options": ["x", "y"]},
        ...     {"index": 1000000, "prediction": "A", "answer": "B", "options": ["y", "x"]}])
        0.0
    """
    groups: dict[int, bool] = {}
    for row in rows:
        right = mmbench_letter(str(row["prediction"]), row["options"]) == row["answer"]
        key = int(row["index"]) % 1_000_000
        groups[key] = groups.get(key, True) and right
    return _ratio(sum(groups.values()), len(groups))
