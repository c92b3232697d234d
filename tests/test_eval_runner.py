"""The eval job over benchmark fixtures in their published layouts: every loader builds the prompts as
LLaVA's question files hold them, a deterministic fake model gets the expected scores, the table lists
every benchmark in the paper's Table 3 order, and POPE pairs answers with labels by question id.

Run: pytest tests/test_eval_runner.py
"""

from __future__ import annotations

import json

import pytest

from imp_data.eval.benchmarks import load_benchmark
from imp_data.eval.runner import TABLE, run_eval
from imp_data.fixtures.eval_benchmarks import write_benchmark_fixtures


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return write_benchmark_fixtures(tmp_path_factory.mktemp("bench"))


def oracle(items, max_new_tokens=None):
    """Answers like a perfect model would (letters for multiple choice)."""
    out = []
    for it in items:
        gold = it.answers[0]
        if it.benchmark == "scienceqa":
            gold = "ABCDE"[int(gold)]
        out.append(gold)
    return out


def test_prompts_as_published(roots):
    pope = load_benchmark("pope", roots["pope"])
    assert pope[0].prompt == "<image>\nIs there a dog in the image?\nAnswer the question using a single word or phrase."
    mmb = load_benchmark("mmbench", roots["mmbench"])
    assert mmb[0].prompt == "<image>\nA pet photo.\nWhat animal is shown?\nA. cat\nB. dog\nC. bird"
    sqa = load_benchmark("scienceqa", roots["scienceqa"])
    assert [it.qid for it in sqa] == ["900", "901"]  # the text-only question is not in SQA-IMG


def test_perfect_and_wrong_models(roots, tmp_path):
    perfect = run_eval(roots, oracle, tmp_path / "perfect")
    for name in roots:
        # MME: 3 categories x 200
        assert perfect[name]["score"] == pytest.approx(600.0 if name == "mme" else 100.0), name
    wrong = run_eval(roots, lambda items, _: ["zzz"] * len(items), tmp_path / "wrong")
    assert all(wrong[name]["score"] == 0.0 for name in roots if name != "pope")
    table = (tmp_path / "perfect" / "metrics.md").read_text()
    assert all(label in table for _, label in TABLE) and "–" in table  # MM-Vet is not computed
    saved = json.loads((tmp_path / "perfect" / "metrics.json").read_text())
    assert set(saved) == set(roots)


def test_pope_pairs_by_question_id(roots, tmp_path):
    items = load_benchmark("pope", roots["pope"])
    shuffled_root = tmp_path / "pope"
    import shutil

    shutil.copytree(roots["pope"], shuffled_root)
    lines = (shuffled_root / "llava_pope_test.jsonl").read_text().splitlines()
    (shuffled_root / "llava_pope_test.jsonl").write_text("\n".join(reversed(lines)) + "\n")
    half = lambda its, _: ["yes" if int(it.qid) % 2 else "no" for it in its]  # noqa: E731
    a = run_eval({"pope": roots["pope"]}, half, tmp_path / "a")["pope"]
    b = run_eval({"pope": shuffled_root}, half, tmp_path / "b")["pope"]
    assert a == b and len(items) == 6
