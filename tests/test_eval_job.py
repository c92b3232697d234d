"""The eval job (`imp_data.eval.splits`, `runner`, `job`, `imp-data eval`): per-benchmark decoding (LLaVA's
128 / 1024 new tokens, capped at the run's context, overridable per benchmark), answers cut at the
template's stop string, splits found by their question files, server-scored splits producing their upload
and shown as "submitted"; and `imp-data eval RUN` end to end on a tiny trained run, writing metrics.json,
the Table-3 markdown listing every benchmark, the answer files and the uploads.

Run: pytest tests/test_eval_job.py
"""

from __future__ import annotations

import json
import shutil

import pytest

from imp_data.cli import main
from imp_data.core.errors import ImpDataError
from imp_data.eval.runner import TABLE, run_eval
from imp_data.eval.splits import SPLITS, cut_at_stop, find_splits, resolve_max_new_tokens
from imp_data.fixtures.eval_benchmarks import write_benchmark_fixtures
from tests.train_support import RUNS, demo_data_root, one_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    write_benchmark_fixtures(root)
    return root


def test_decoding_defaults_follow_llava():
    keys = list(SPLITS)
    tokens = resolve_max_new_tokens(keys)
    assert {k for k, n in tokens.items() if n == 1024} == {"scienceqa", "mmbench", "mmbench_test"}
    assert {n for k, n in tokens.items() if n != 1024} == {128}
    assert resolve_max_new_tokens(keys, cap=512)["mmbench"] == 512
    assert resolve_max_new_tokens(keys, cap=64)["pope"] == 64
    over = resolve_max_new_tokens(keys, every=16, per={"mmbench": 2000, "vqav2_testdev": 8}, cap=512)
    assert over["pope"] == 16 and over["mmbench"] == over["mmbench_test"] == 2000 and over["vqav2_testdev"] == 8
    assert over["vqav2"] == 16
    with pytest.raises(ValueError, match="unknown benchmark 'mmb'; valid: vqav2, gqa"):
        resolve_max_new_tokens(keys, per={"mmb": 3})
    with pytest.raises(ValueError, match=">= 1"):
        resolve_max_new_tokens(keys, every=0)


def test_stop_string():
    assert cut_at_stop("  Yes</s>", "</s>") == "Yes"
    assert cut_at_stop("B. dog</s> USER: again</s>", "</s>") == "B. dog"
    assert cut_at_stop("\nA cat on a mat.\nMore text", "\n") == "A cat on a mat."
    assert cut_at_stop(" no stop here ", "</s>") == "no stop here" and cut_at_stop("x", None) == "x"


def test_splits_found_by_question_file(bench, tmp_path):
    assert list(find_splits(bench)) == list(SPLITS)
    assert list(find_splits(bench, ["vqav2", "mmbench_test"])) == ["vqav2", "vqav2_testdev", "mmbench_test"]
    with pytest.raises(ValueError, match="unknown benchmark 'mmvet'"):
        find_splits(bench, ["mmvet"])
    (tmp_path / "gqa").mkdir()
    with pytest.raises(ImpDataError, match=r"gqa: none of llava_gqa_testdev_balanced.jsonl"):
        find_splits(tmp_path)
    with pytest.raises(ImpDataError, match="no benchmark folders"):
        find_splits(tmp_path / "gqa")


def test_runner_caps_stop_and_server_splits(bench, tmp_path):
    calls = []

    def model(items, max_new_tokens):
        calls.append((items[0].benchmark, max_new_tokens))
        return [f" {it.answers[0] if it.answers else 'Yes'}</s>USER: more" for it in items]

    splits = find_splits(bench, ["pope", "mmbench", "vqav2_testdev"])
    results = run_eval(splits, model, tmp_path, max_new_tokens={"pope": 5, "mmbench": 7, "mmbench_test": 7,
                                                                 "vqav2_testdev": 5})
    assert calls == [("vqav2", 5), ("pope", 5), ("mmbench", 7), ("mmbench", 7)]  # grouped by cap
    assert list(results) == ["vqav2_testdev", "pope", "mmbench", "mmbench_test"]  # metrics in SPLITS order
    assert results["pope"]["score"] == 100.0 and results["mmbench"]["score"] == 100.0  # "</s>USER..." cut off
    for key in ("vqav2_testdev", "mmbench_test"):
        assert results[key]["score"] is None and results[key]["server"] and results[key]["max_new_tokens"] in (5, 7)
    assert json.loads((tmp_path / "answers_upload" / "vqav2_testdev.json").read_text())[1] == \
        {"question_id": 4000000, "answer": "yes"}
    assert (tmp_path / "answers_upload" / "mmbench_dev.xlsx").is_file()
    table = (tmp_path / "metrics.md").read_text()
    assert "| submitted (test-dev) |" not in table and "| submitted |" in table  # VQAv2: one split, one cell
    assert "100.00 (dev) / submitted (test)" in table
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["vqav2_testdev"]["submission"]["missing"] == 1 and saved["vqav2_testdev"]["score"] is None


def test_model_answer_count_is_checked(bench, tmp_path):
    with pytest.raises(ImpDataError, match="pope: the model returned 1 answers for 6 questions"):
        run_eval(find_splits(bench, ["pope"]), lambda items, n: ["yes"], tmp_path)


def test_bad_cli_override_is_one_line(capsys):
    assert main(["eval", str(RUNS / "tiny_stage2.yaml"), "--max-new-tokens-for", "mmbench:64"]) == 1
    err = capsys.readouterr().err
    assert "--max-new-tokens-for 'mmbench:64': expected NAME=INTEGER" in err and len(err.strip().splitlines()) == 1


def test_imp_data_eval_run_end_to_end(demo_build, tmp_path, capsys):
    data_root = demo_data_root(demo_build[0], tmp_path)
    from imp_data.train.loop import train

    train(RUNS / "tiny_stage1.yaml", data_root=data_root, overrides=["name=e1", "train.max_steps=1"])
    train(RUNS / "tiny_stage2.yaml", data_root=data_root,
          overrides=["name=e2", "train.max_steps=1", "model.init_projector=e1"])
    write_benchmark_fixtures(data_root / "eval")
    shutil.rmtree(data_root / "eval" / "vqav2")  # a benchmark not laid out is simply not run
    code = main(["eval", str(RUNS / "tiny_stage2.yaml"), "--data-root", str(data_root), "--set", "name=e2",
                 "--set", "model.init_projector=e1", "--max-new-tokens", "3", "--max-new-tokens-for", "mmbench=2"])
    out = capsys.readouterr().out
    assert code == 0 and "metrics written to" in out
    eval_dir = data_root / "runs" / "e2" / "eval"
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert set(metrics) == {k for k in SPLITS if not k.startswith("vqav2")}
    assert metrics["pope"]["max_new_tokens"] == 3 and metrics["mmbench_test"]["max_new_tokens"] == 2
    assert metrics["vizwiz_test"]["score"] is None and isinstance(metrics["gqa"]["score"], float)
    table = (eval_dir / "metrics.md").read_text()
    header = table.splitlines()[2]
    assert all(f" {label} " in header for _, label in TABLE)
    row = table.splitlines()[4]
    assert row.split("|")[1].strip() == "–" and row.split("|")[-2].strip() == "–"  # VQAv2 not run, MM-Vet never
    assert "submitted (test)" in row
    for upload in ("vizwiz_test.json", "mmbench_dev.xlsx", "mmbench_test.xlsx"):
        assert (eval_dir / "answers_upload" / upload).is_file()
    pope = (eval_dir / "answers" / "pope.jsonl").read_text().splitlines()
    assert len(pope) == 6 and json.loads(pope[0])["model_id"] == "e2"
