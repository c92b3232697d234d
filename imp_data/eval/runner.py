"""`imp-data eval`: run a model over the benchmarks and score them with the official rules.

`generate(items) -> list[str]` is the model side (greedy, stop at `</s>`; `imp_data.train.generate`);
this module builds the items, scores each benchmark with `imp_data.eval.metrics` and writes
`metrics.json`, `metrics.md` (laid out like the Imp paper's Table 3) and one predictions jsonl per
benchmark. MM-Vet is GPT-4-judged and not computed ("–").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from imp_data.eval.benchmarks import EvalItem, load_benchmark
from imp_data.io import write_json_atomic, write_text_atomic

TABLE = [("vqav2", "VQAv2"), ("gqa", "GQA"), ("vizwiz", "VizWiz"), ("scienceqa", "SQA(IMG)"), ("textvqa", "TextVQA"),
         ("pope", "POPE"), ("mme", "MME"), ("mmbench", "MMB"), ("mmvet", "MM-Vet")]


def score(name: str, items: list[EvalItem], preds: list[str]) -> dict:
    """The benchmark's headline number (and details), from raw predictions."""
    from imp_data.eval import metrics as m

    if name == "vqav2":
        accs = [m.vqa_accuracy(p, it.answers) for it, p in zip(items, preds)]
        return {"score": 100 * sum(accs) / len(accs) if accs else 0.0}
    if name == "vizwiz":
        accs = [m.vqa_accuracy(m.normalize_evalai_answer(p), it.answers) for it, p in zip(items, preds)]
        return {"score": 100 * sum(accs) / len(accs) if accs else 0.0}
    if name == "textvqa":
        accs = [m.textvqa_accuracy(p, it.answers) for it, p in zip(items, preds)]
        return {"score": 100 * sum(accs) / len(accs) if accs else 0.0}
    if name == "gqa":
        rows = [(p, it.answers[0]) for it, p in zip(items, preds) if it.meta.get("balanced", True)]
        correct = [m.gqa_exact_match(p, gold) for p, gold in rows]
        return {"score": 100 * sum(correct) / len(correct) if correct else 0.0}
    if name == "pope":
        per = {}
        for category in sorted({it.category for it in items}):
            pairs = [(it.qid, p, it.answers[0]) for it, p in zip(items, preds) if it.category == category]
            per[category] = m.pope_metrics_by_id({q: p for q, p, _ in pairs}, {q: lab for q, _, lab in pairs})
        f1 = [v["f1"] for v in per.values()]
        return {"score": 100 * sum(f1) / len(f1) if f1 else 0.0, "categories": per}
    if name == "scienceqa":
        ok = [m.scienceqa_correct(p, it.meta["num_options"], int(it.answers[0])) for it, p in zip(items, preds)]
        return {"score": 100 * sum(ok) / len(ok) if ok else 0.0}
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


def render_table(results: dict) -> str:
    header = "| " + " | ".join(label for _, label in TABLE) + " |"
    rule = "|" + "---:|" * len(TABLE)
    cells = [f"{results[k]['score']:.1f}" if k in results else "–" for k, _ in TABLE]
    return "\n".join([header, rule, "| " + " | ".join(cells) + " |"])


def run_eval(benchmarks: dict[str, Path], generate: Callable[[list], list[str]], out_dir: Path) -> dict:
    """Evaluate every benchmark in `benchmarks` (name -> root); returns {name: {"score", ...}}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, root in benchmarks.items():
        items = load_benchmark(name, Path(root))
        preds = generate(items) if items else []
        with open(out_dir / f"{name}_predictions.jsonl", "w") as f:
            for it, p in zip(items, preds):
                f.write(json.dumps({"question_id": it.qid, "prompt": it.prompt, "text": p}, ensure_ascii=False) + "\n")
        results[name] = {**score(name, items, preds), "n": len(items)}
    write_json_atomic(out_dir / "metrics.json", results)
    write_text_atomic(out_dir / "metrics.md", "# Benchmarks (layout of the Imp paper's Table 3)\n\n"
                      + render_table(results) + "\n\nMM-Vet is scored by a GPT-4 judge and is not computed here.\n")
    return results
