"""The benchmark metrics exactly as the official scripts compute them (EVAL.md §15), quirks included.

Departures (EVAL §15.9): POPE pairs by question id and rejects unequal lengths; zero denominators give 0
instead of ZeroDivisionError; VQAv2's leave-one-out excludes by position; Python 3 semantics for U+0130
and non-ASCII digits.
"""

from __future__ import annotations

import re
from collections import defaultdict

from imp_data.eval.vqa_normalize import pre_step, process_digit_article, process_punctuation

LETTERS = "ABCDE"
_SQA_RE = re.compile(r"The answer is ([A-Z]).")


def normalize_vqa_answer(text: str) -> str:
    """§15.1: pre-step, processPunctuation, processDigitArticle.

    Example:
        >>> normalize_vqa_answer("1,000"), normalize_vqa_answer("U. S. A."), normalize_vqa_answer("3..5")
        ('1000', 'u s', '3.5')
    """
    return process_digit_article(process_punctuation(pre_step(text)))


def vqa_accuracy(pred: str, gts: list[str]) -> float:
    """§15.2: official VQAv2 per-question accuracy (unanimity shortcut, leave-one-out by position)."""
    if not gts:
        return 0.0
    gts = [pre_step(g) for g in gts]
    pred = pre_step(pred)
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(g)) for g in gts]
        pred = process_digit_article(process_punctuation(pred))
    total = 0.0
    for i in range(len(gts)):
        matches = sum(1 for j, g in enumerate(gts) if j != i and g == pred)
        total += min(1, matches / 3)
    return total / len(gts)


def normalize_evalai_answer(text: str) -> str:
    """§15.3: LLaVA's EvalAIAnswerProcessor.

    Example:
        >>> normalize_evalai_answer("black,white"), normalize_evalai_answer("IT'S")
        ('blackwhite', "it 's")
    """
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text, comma_trigger=False))


def textvqa_accuracy(pred: str, gts: list[str]) -> float:
    """§15.4: the m4c TextVQAAccuracyEvaluator score for one question (exactly 10 GTs)."""
    if len(gts) != 10:
        raise ValueError(f"TextVQA questions have 10 answers, got {len(gts)}")
    answers = [normalize_evalai_answer(g) for g in gts]
    pred = normalize_evalai_answer(pred)
    scores = {}
    for unique in dict.fromkeys(answers):
        total = 0.0
        for i in range(len(answers)):
            others = answers[:i] + answers[i + 1:]
            total += min(1, sum(1 for a in others if a == unique) / 3)
        scores[unique] = total / len(answers)
    return scores.get(pred, 0.0)


def parse_pope_answer(text: str) -> str:
    """§15.5: 'no' if a space-split token before the first period is No/not/no, else 'yes'.

    Example:
        >>> parse_pope_answer("Yes, there is no doubt."), parse_pope_answer("NO"), parse_pope_answer(".No")
        ('no', 'yes', 'yes')
    """
    if "." in text:
        text = text.split(".")[0]
    tokens = text.replace(",", "").split(" ")
    return "no" if any(t in ("No", "not", "no") for t in tokens) else "yes"


def _div(a: float, b: float) -> float:
    return a / b if b else 0.0


def pope_metrics(preds: list[str], labels: list[str]) -> dict:
    """§15.6: accuracy, precision, recall, f1, yes_ratio over pairs already joined by question id."""
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions but {len(labels)} labels: join them by question id first")
    parsed = [parse_pope_answer(p) for p in preds]
    pos = [lab != "no" for lab in labels]
    tp = sum(1 for p, y in zip(parsed, pos) if p == "yes" and y)
    fp = sum(1 for p, y in zip(parsed, pos) if p == "yes" and not y)
    tn = sum(1 for p, y in zip(parsed, pos) if p == "no" and not y)
    fn = sum(1 for p, y in zip(parsed, pos) if p == "no" and y)
    precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
    f1 = _div(2 * precision * recall, precision + recall)
    return {"accuracy": _div(tp + tn, tp + tn + fp + fn), "precision": precision, "recall": recall, "f1": f1,
            "yes_ratio": _div(parsed.count("yes"), len(parsed))}


def pope_metrics_by_id(preds: dict, labels: dict) -> dict:
    """POPE joined by question id (never by file order); every labelled id needs a prediction."""
    missing = set(labels) - set(preds)
    if missing:
        raise ValueError(f"no prediction for POPE question(s) {sorted(missing)[:3]}")
    ids = sorted(labels, key=str)
    return pope_metrics([preds[i] for i in ids], [labels[i] for i in ids])


def parse_scienceqa_letter(pred: str | None) -> str | None:
    """§15.7: the official parser (None where it reports FAILED).

    Example:
        >>> parse_scienceqa_letter("A. "), parse_scienceqa_letter("A."), parse_scienceqa_letter("The answer is AB.")
        ('A', None, 'A')
    """
    if pred is None:
        return None
    if pred in tuple(LETTERS):
        return pred
    if len(pred) >= 3 and pred[0] in LETTERS and pred[1:3] == ". ":
        return pred[0]
    found = _SQA_RE.findall(pred)
    return found[0] if len(found) == 1 else None


def scienceqa_correct(pred: str | None, num_options: int, answer_index: int) -> bool:
    """§15.8: correct iff the parsed letter is among the first num_options and matches."""
    letter = parse_scienceqa_letter(pred)
    if letter is None or letter not in LETTERS[:num_options]:
        return False
    return LETTERS.index(letter) == answer_index


def gqa_exact_match(pred: str, gold: str) -> bool:
    """GQA (EVAL §5): `convert_gqa_for_eval` keeps `text.rstrip('.').lower()`, scored by exact equality."""
    return pred.rstrip(".").lower() == gold


def mmbench_letter(pred: str, options: list[str]) -> str | None:
    """VLMEvalKit's `can_infer_option` (EVAL §11), without the ChatGPT fallback."""
    text = pred
    for ch in ".()[],:;!*#{}":
        text = text.replace(ch, " ")
    tokens = text.split()
    letters = [c for c in "ABCDE"[: len(options)] if c in tokens]
    if "A" in letters and len(tokens) > 3:
        return None
    if len(letters) == 1:
        return letters[0]
    matches = [chr(65 + i) for i, opt in enumerate(options) if opt.lower() in pred.lower()]
    return matches[0] if len(matches) == 1 else None


def mmbench_circular_accuracy(rows: list[dict]) -> float:
    """Circular MMBench: rows (index, prediction, answer, options) grouped by index mod 1e6; a question is
    right only if every rotation is right."""
    groups: dict[int, list[bool]] = defaultdict(list)
    for row in rows:
        groups[int(row["index"]) % 1_000_000].append(mmbench_letter(row["prediction"], row["options"]) == row["answer"])
    return _div(sum(all(v) for v in groups.values()), len(groups))


def mme_scores(rows: list[dict]) -> dict:
    """MME (EVAL §10): per category acc + acc+ (both questions of an image right), in percent; perception =
    sum over categories. A prediction is right if it parses to the gold yes/no."""
    per: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        pred = row["prediction"].strip().lower()
        parsed = "yes" if pred.startswith("yes") else ("no" if pred.startswith("no") else "other")
        per[row["category"]][row["image"]].append(parsed == row["answer"].strip().lower())
    categories = {}
    for category, images in per.items():
        answers = [ok for oks in images.values() for ok in oks]
        acc = 100 * _div(sum(answers), len(answers))
        acc_plus = 100 * _div(sum(all(oks) for oks in images.values()), len(images))
        categories[category] = {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus}
    return {"categories": categories, "perception": sum(c["score"] for c in categories.values())}
