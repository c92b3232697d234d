"""VQAv2 val is scored as LLaVA's convert_vqav2_for_submission.py + the server would: the EvalAI answer
processor runs on the model's answer before vqaEval's accuracy, so capitalised and punctuated answers score
like their plain forms — including where all ten humans agree, where vqaEval itself normalises nothing.

Run: pytest tests/test_eval_vqav2_val.py
"""

from __future__ import annotations

import pytest

from imp_data.eval.benchmarks import EvalItem, load_benchmark
from imp_data.eval.runner import run_eval, score
from imp_data.fixtures.eval_benchmarks import write_benchmark_fixtures


def item(answers: list[str]) -> EvalItem:
    return EvalItem("vqav2", qid="1", prompt="<image>\nq", answers=answers)


@pytest.mark.parametrize("pred, gts, expected", [
    ("Yes", ["yes"] * 10, 100.0),                       # scored 0 raw: unanimous humans, no normalisation
    ("Yes.", ["yes"] * 10, 100.0),
    ("  YES\n", ["yes"] * 10, 100.0),
    ("Two", ["2"] * 10, 100.0),                         # number words become digits
    ("A dog!", ["dog"] * 10, 100.0),                    # articles and punctuation go
    ("It's red.", ["it 's red"] * 10, 100.0),           # "'s" split off as the processor does
    ("Light Blue.", ["blue"] * 7 + ["light blue"] * 3, pytest.approx(90.0)),  # leave-one-out min(1, n/3)
    ("Blue", ["blue"] * 2 + ["navy"] * 8, pytest.approx(60.0)),
    ("No", ["yes"] * 10, 0.0),
])
def test_capitalised_and_punctuated_answers(pred, gts, expected):
    assert score("vqav2", [item(gts)], [pred])["score"] == expected


def test_val_split_end_to_end(tmp_path):
    """A model answering every fixture question right, capitalised with a full stop, scores 100 on VQAv2 val
    (the fixture's humans disagree, so raw scoring compared 'Blue.' with 'blue' and gave 0)."""
    roots = write_benchmark_fixtures(tmp_path / "bench")
    gold = {it.qid: it.answers[0] for it in load_benchmark("vqav2", roots["vqav2"])}
    def shouting(items, _cap):
        return [gold[it.qid].capitalize() + "." for it in items]

    result = run_eval({"vqav2": roots["vqav2"]}, shouting, tmp_path / "out")
    assert result["vqav2"]["n"] == 3 and result["vqav2"]["score"] == pytest.approx(100.0)
    wrong = run_eval({"vqav2": roots["vqav2"]}, lambda items, _cap: ["Purple."] * len(items), tmp_path / "wrong")
    assert wrong["vqav2"]["score"] == 0.0
