"""`imp-data eval`: run a model over the benchmark splits and score them with the official rules.

`generate(items, max_new_tokens) -> list[str]` is the model side (greedy; `imp_data.eval.job` binds it to a
checkpoint). Per split this module writes LLaVA's answer file `answers/<key>.jsonl`, then either scores it
with `imp_data.eval.metrics` or, for a server-scored split, writes the upload under `answers_upload/`; at the
end `metrics.json` and `metrics.md` (laid out like the Imp paper's Table 3, server splits shown as
"submitted"). Splits run grouped by their token cap, so a model rebuilt per cap is rebuilt once per value.
MM-Vet is GPT-4-judged and not computed ("–").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from imp_data.core.errors import ImpDataError
from imp_data.core.io import write_json_atomic, write_text_atomic
from imp_data.eval.benchmarks import EvalItem
from imp_data.eval.splits import SPLITS, cut_at_stop, get_split, resolve_max_new_tokens
from imp_data.eval.submission import write_answers

TABLE = [("vqav2", "VQAv2"), ("gqa", "GQA"), ("vizwiz", "VizWiz"), ("scienceqa", "SQA(IMG)"), ("textvqa", "TextVQA"),
         ("pope", "POPE"), ("mme", "MME"), ("mmbench", "MMB"), ("mmvet", "MM-Vet")]
Generate = Callable[[list, int], list[str]]


def _mean100(values: list) -> float:
    return 100 * sum(values) / len(values) if values else 0.0


def score(name: str, items: list[EvalItem], preds: list[str]) -> dict:
    """The benchmark's headline number (and details), from raw predictions."""
    from imp_data.eval import metrics as m

    if name in ("vqav2", "vizwiz"):
        # As LLaVA's convert_vqav2/vizwiz_for_submission.py feed the server: the EvalAI answer processor
        # first, then vqaEval's accuracy. Raw, "Yes" against ten human "yes" scores 0 (vqaEval normalises
        # only when the humans disagree).
        return {"score": _mean100([m.vqa_accuracy(m.normalize_evalai_answer(p), it.answers)
                                   for it, p in zip(items, preds)])}
    if name == "textvqa":
        return {"score": _mean100([m.textvqa_accuracy(p, it.answers) for it, p in zip(items, preds)])}
    if name == "gqa":
        return {"score": _mean100([m.gqa_exact_match(p, it.answers[0]) for it, p in zip(items, preds)
                                   if it.meta.get("balanced", True)])}
    if name == "pope":
        per = {}
        for category in sorted({it.category for it in items}):
            pairs = [(it.qid, p, it.answers[0]) for it, p in zip(items, preds) if it.category == category]
            per[category] = m.pope_metrics_by_id({q: p for q, p, _ in pairs}, {q: lab for q, _, lab in pairs})
        return {"score": _mean100([v["f1"] for v in per.values()]), "categories": per}
    if name == "scienceqa":
        return {"score": _mean100([m.scienceqa_correct(p, it.meta["num_options"], int(it.answers[0]))
                                   for it, p in zip(items, preds)])}
    if name == "mmbench":
        rows = [{"index": it.qid, "prediction": p, "answer": it.answers[0], "options": it.meta["options"]}
                for it, p in zip(items, preds)]
        return {"score": 100 * m.mmbench_circular_accuracy(rows)}
    if name == "mme":
        rows = [{"category": it.category, "image": it.meta["image"], "prediction": p, "answer": it.answers[0]}
                for it, p in zip(items, preds)]
        result = m.mme_scores(rows)
        return {"score": result["perception"], "categories": result["categories"]}
    raise ValueError(f"no scorer for {name!r}")


def _cell(result: dict) -> str:
    if result.get("score") is None:
        return "submitted"
    return f"{result['score']:.1f}" if result["benchmark"] == "mme" else f"{result['score']:.2f}"


def render_table(results: dict) -> str:
    """Table 3's columns; a benchmark run on several splits shows each, e.g. "78.10 (val) / submitted (test-dev)"."""
    cells = []
    for bench, _ in TABLE:
        runs = [r for r in results.values() if r.get("benchmark") == bench]
        if not runs:
            cells.append("–")
        elif len(runs) == 1:
            cells.append(_cell(runs[0]))
        else:
            cells.append(" / ".join(f"{_cell(r)} ({r['split']})" for r in runs))
    return "\n".join(["| " + " | ".join(label for _, label in TABLE) + " |", "|" + "---:|" * len(TABLE),
                      "| " + " | ".join(cells) + " |"])


def render_splits(results: dict) -> str:
    """One line per split: size, decoding cap, number or upload (with unmatched/malformed answer counts)."""
    lines = ["| split | questions | max_new_tokens | result |", "|---|---:|---:|---|"]
    for key, r in results.items():
        sub = r.get("submission")
        result = _cell(r) + (f" to {r['server']}" if r.get("server") else "")
        if sub:
            result += (f"; upload `{Path(sub['path']).name}` ({sub['questions']} rows, {sub['missing']} without "
                       f"an answer, {sub['malformed_lines']} malformed answer lines)")
        lines.append(f"| {key} ({r['split']}) | {r['n']} | {r['max_new_tokens']} | {result} |")
    return "\n".join(lines)


def run_eval(benchmarks: Mapping[str, Path], generate: Generate, out_dir: Path, *,
             max_new_tokens: Mapping[str, int] | None = None, stop: str | None = "</s>",
             model_id: str = "imp") -> dict:
    """Evaluate every split in `benchmarks` (split key -> benchmark folder); returns {key: result}.

    Args:
        generate: `generate(items, max_new_tokens)` -> one answer per item, in order.
        max_new_tokens: per split key (default: each split's LLaVA setting, `imp_data.eval.splits`).
        stop: the template's stop string; each answer is cut there and stripped.
        model_id: the answer files' `model_id`.

    Returns:
        {key: {"benchmark", "split", "n", "max_new_tokens", "score"(None when server-scored)[, "server",
        "submission", "categories"]}}, in `SPLITS` order, also written to `out_dir/metrics.json`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    caps = {**resolve_max_new_tokens(benchmarks), **(max_new_tokens or {})}
    results = {}
    for key in sorted(benchmarks, key=lambda k: caps[k]):  # stable: same-cap splits keep their order
        spec, root = get_split(key), Path(benchmarks[key])
        items = spec.load(root)
        raw = generate(items, caps[key]) if items else []
        if len(raw) != len(items):
            raise ImpDataError(f"{key}: the model returned {len(raw)} answers for {len(items)} questions")
        texts = [cut_at_stop(t, stop) for t in raw]
        answers = write_answers(out_dir / "answers" / f"{key}.jsonl", items, texts, model_id)
        result = {"benchmark": spec.benchmark, "split": spec.split, "n": len(items), "max_new_tokens": caps[key]}
        if spec.server:
            result.update(score=None, server=spec.server)
        else:
            result.update(score(spec.benchmark, items, texts))
        if spec.submit:
            result["submission"] = spec.submit(answers, root, out_dir / "answers_upload")
        results[key] = result
    results = {k: results[k] for k in SPLITS if k in results}
    write_json_atomic(out_dir / "metrics.json", results)
    write_text_atomic(out_dir / "metrics.md", "# Benchmarks (layout of the Imp paper's Table 3)\n\n"
                      + render_table(results) + "\n\n## Splits\n\n" + render_splits(results)
                      + "\n\n\"submitted\": scored by the benchmark's server from the upload file in answers_upload/.\n"
                      "MM-Vet is scored by a GPT-4 judge and is not computed here.\n")
    return results
