"""Answer files and server uploads (`imp_data.eval.submission`, `imp_data.eval.xlsx`): each upload writer
against a hand-written expected file — malformed answer lines counted and skipped, VQAv2's missing answers
uploaded as '', the EvalAI answer processor applied, MMBench's columns dropped and `prediction` inserted as
LLaVA's converter does — and LLaVA's answer-line layout per generation module, written then read back.

Run: pytest tests/test_eval_submission.py
"""

from __future__ import annotations

import json

import pytest

from imp_data.core.errors import ImpDataError
from imp_data.eval.benchmarks import load_benchmark
from imp_data.eval.submission import (
    answer_id,
    read_answers,
    write_answers,
    write_mmbench_upload,
    write_vizwiz_upload,
    write_vqav2_upload,
)
from imp_data.eval.xlsx import column_letter, read_xlsx, write_xlsx
from imp_data.fixtures.eval_benchmarks import write_benchmark_fixtures

ANSWERS = (
    '{"question_id": 1, "prompt": "q", "text": "Two dogs.", "answer_id": "x", "model_id": "m", "metadata": {}}\n'
    "not json at all\n"
    '{"question_id": 3, "prompt": "q", "text": "The dog\'s, ball?"}\n'
    '{"prompt": "a line without question_id"}\n'
    '["a", "list"]\n'
    '{"question_id": 4, "text": "1,000 t-shirts"}\n'
)


def lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_vqav2_upload_covers_test2015_with_evalai_answers(tmp_path):
    answers = tmp_path / "merge.jsonl"
    answers.write_text(ANSWERS)
    test2015 = lines(tmp_path / "llava_vqav2_mscoco_test2015.jsonl",
                     [{"question_id": q, "image": f"COCO_test2015_{q:012d}.jpg", "text": "t"} for q in (4, 1, 2, 3)])
    stats = write_vqav2_upload(answers, test2015, tmp_path / "up" / "vqav2.json")
    expected = ('[{"question_id": 4, "answer": "1000 t shirts"}, {"question_id": 1, "answer": "2 dogs"}, '
                '{"question_id": 2, "answer": ""}, {"question_id": 3, "answer": "dog \'s ball"}]')
    assert (tmp_path / "up" / "vqav2.json").read_text() == expected  # json.dump's default layout, as upstream
    assert stats == {"path": str(tmp_path / "up" / "vqav2.json"), "answer_lines": 6, "malformed_lines": 3,
                     "questions": 4, "missing": 1}


def test_vizwiz_upload_and_its_every_question_rule(tmp_path):
    answers = lines(tmp_path / "answers.jsonl", [{"question_id": 0, "text": "Unanswerable."},
                                                 {"question_id": 1, "text": "A can of Coke, maybe?"}])
    with open(answers, "a") as f:
        f.write("{broken\n")
    questions = lines(tmp_path / "llava_test.jsonl", [{"question_id": 1, "image": "VizWiz_test_00000001.jpg"},
                                                      {"question_id": 0, "image": "VizWiz_test_00000000.jpg"}])
    stats = write_vizwiz_upload(answers, questions, tmp_path / "vizwiz.json")
    assert (tmp_path / "vizwiz.json").read_text() == (
        '[{"image": "VizWiz_test_00000001.jpg", "answer": "can of coke maybe"}, '
        '{"image": "VizWiz_test_00000000.jpg", "answer": "unanswerable"}]')
    assert stats["malformed_lines"] == 1 and stats["questions"] == 2
    lines(questions, [{"question_id": 7, "image": "VizWiz_test_00000007.jpg"}])
    with pytest.raises(ImpDataError, match=r"answers.jsonl: no answer for 1 VizWiz question.*7"):
        write_vizwiz_upload(answers, questions, tmp_path / "vizwiz.json")


MMB_TSV = ("index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\tl2-category\timage\tsource\tcomment\n"
           "0\tWhich animal?\tA pet photo.\tcat\tdog\tbird\tnan\tB\tattr\tFP-S\taGk=\tsrc\tnan\n"
           "1000000\tWhich animal?\tA pet photo.\tdog\tbird\tcat\tnan\tA\tattr\tFP-S\taGk=\tsrc\tnan\n"
           "1\tHow many?\tnan\tone\ttwo\t\tnan\tA\tcount\tFP-C\taGk=\tsrc\tnan\n")
# The converter's frame: TSV columns minus hint/category/source/image/comment/l2-category, `prediction`
# inserted at position 6; pandas' NaN cells (nan, empty) stay empty; rows without an answer, empty.
MMB_EXPECTED = [["index", "question", "A", "B", "C", "D", "prediction", "answer"],
                [0, "Which animal?", "cat", "dog", "bird", None, "B. dog", "B"],
                [1000000, "Which animal?", "dog", "bird", "cat", None, "A", "A"],
                [1, "How many?", "one", "two", None, None, None, "A"]]


def test_mmbench_upload_is_the_converters_sheet(tmp_path):
    tsv = tmp_path / "mmbench_dev_20230712.tsv"
    tsv.write_text(MMB_TSV)
    answers = lines(tmp_path / "answers.jsonl", [{"question_id": 0, "text": "B. dog"}, {"question_id": 1000000,
                                                                                        "text": "A"}])
    with open(answers, "a") as f:
        f.write('{"text": "no id"}\n')
    stats = write_mmbench_upload(answers, tsv, tmp_path / "up.xlsx")
    assert read_xlsx(tmp_path / "up.xlsx") == MMB_EXPECTED
    assert stats["missing"] == 1 and stats["malformed_lines"] == 1 and stats["questions"] == 3
    first = (tmp_path / "up.xlsx").read_bytes()
    write_mmbench_upload(answers, tsv, tmp_path / "up.xlsx")
    assert (tmp_path / "up.xlsx").read_bytes() == first  # same table, same bytes


def test_mmbench_upload_reads_in_pandas(tmp_path):
    pytest.importorskip("openpyxl")
    pd = pytest.importorskip("pandas")
    tsv = tmp_path / "mmbench_dev_20230712.tsv"
    tsv.write_text(MMB_TSV)
    write_mmbench_upload(lines(tmp_path / "a.jsonl", [{"question_id": 0, "text": "B. dog"}]), tsv, tmp_path / "up.xlsx")
    frame = pd.read_excel(tmp_path / "up.xlsx")
    assert list(frame.columns) == MMB_EXPECTED[0] and frame["index"].tolist() == [0, 1000000, 1]


def test_xlsx_cells_and_columns(tmp_path):
    assert [column_letter(i) for i in (0, 25, 26, 51, 52, 701, 702)] == ["A", "Z", "AA", "AZ", "BA", "ZZ", "AAA"]
    rows = [[1, 2.5, "a<b & \"c\"", None, "ctrl\x01char", "  spaced  "], list(range(30))]
    write_xlsx(tmp_path / "t.xlsx", ["h"] * 30, rows)
    back = read_xlsx(tmp_path / "t.xlsx")
    assert back[1] == [1, 2.5, "a<b & \"c\"", None, "ctrlchar", "  spaced  "] and back[2] == list(range(30))


def test_answer_lines_as_llava_writes_them(tmp_path):
    roots = write_benchmark_fixtures(tmp_path / "bench")
    for name, extra in (("pope", []), ("mmbench", ["round_id", "options", "option_char"]), ("scienceqa", []),
                        ("textvqa", [])):
        items = load_benchmark(name, roots[name])
        path = write_answers(tmp_path / f"{name}.jsonl", items, ["Yes"] * len(items), "imp-v1-3b")
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        keys = ["question_id", "prompt", "text", "answer_id", "model_id", "metadata"]
        if extra:
            keys = ["question_id", "round_id", "prompt", "text", "options", "option_char", "answer_id", "model_id",
                    "metadata"]
        assert all(list(r) == keys for r in rows), name
        assert all(len(r["answer_id"]) == 22 and r["model_id"] == "imp-v1-3b" and r["metadata"] == {} for r in rows)
        assert len({r["answer_id"] for r in rows}) == len(rows)
        assert read_answers(path).texts == {str(r["question_id"]): "Yes" for r in rows}
    pope = json.loads((tmp_path / "pope.jsonl").read_text().splitlines()[0])
    assert pope["question_id"] == 1 and pope["prompt"] == "Is there a dog in the image?\n" \
        "Answer the question using a single word or phrase."  # the question file's text: no <image> line
    sqa = json.loads((tmp_path / "scienceqa.jsonl").read_text().splitlines()[0])
    assert sqa["prompt"].startswith("<image>\nContext: N/A")  # model_vqa_science records the <image> line
    mmb = json.loads((tmp_path / "mmbench.jsonl").read_text().splitlines()[0])
    assert mmb["question_id"] == 0 and mmb["round_id"] == 0 and mmb["option_char"] == ["A", "B", "C"]
    assert mmb["prompt"] == "A pet photo.\nWhat animal is shown?\nA. cat\nB. dog\nC. bird"
    text = json.loads((tmp_path / "textvqa.jsonl").read_text().splitlines()[0])
    assert text["question_id"] == "0000000000000000"  # LLaVA's TextVQA question_id is the image id
    assert answer_id("m", "pope", "1") != answer_id("m", "pope", "2")
