"""Prompts exactly as LLaVA's generation modules build them (docs/eval.md §2.2, §3-§11), from fixture records in
the published layouts, for every split: the short-answer suffix, VizWiz's unanswerable suffix, TextVQA's
reference OCR tokens (and eval_textvqa's prompt parse that finds its annotation), ScienceQA's context and
options with the optional letter suffix, MMBench's hint/options with pandas' NaN rules, MME in both folder
layouts; malformed input raises one error naming file and record.

Run: pytest tests/test_eval_prompts.py
"""

from __future__ import annotations

import json

import pytest

from imp_data.core.errors import ImpDataError
from imp_data.eval.benchmarks import LOADERS, load_benchmark, load_mmbench, load_scienceqa, textvqa_question
from imp_data.eval.published import is_missing
from imp_data.fixtures.eval_benchmarks import write_benchmark_fixtures

SHORT = "\nAnswer the question using a single word or phrase."
UNANSWERABLE = "\nWhen the provided information is insufficient, respond with 'Unanswerable'." + SHORT
LETTER = "\nAnswer with the option's letter from the given choices directly."


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return write_benchmark_fixtures(tmp_path_factory.mktemp("prompts"))


def load(roots, key):
    return load_benchmark(key, roots[key.split("_")[0]])


@pytest.mark.parametrize("key, prompt, answers", [
    ("vqav2", "<image>\nWhat color is the sky?" + SHORT, ["blue"] * 7 + ["light blue"] * 3),
    ("vqav2_testdev", "<image>\nWhat color is the sky?" + SHORT, []),
    ("gqa", "<image>\nWhat color is the sky?" + SHORT, ["blue"]),
    ("vizwiz", "<image>\nWhat color is the sky?" + UNANSWERABLE, ["blue"] * 7 + ["unanswerable"] * 3),
    ("vizwiz_test", "<image>\nWhat color is the sky?" + UNANSWERABLE, []),
    ("textvqa", "<image>\nWhat does the sign say?\nReference OCR token: open, 0" + SHORT,
     ["open"] * 7 + ["opened"] * 3),
    ("pope", "<image>\nIs there a dog in the image?" + SHORT, ["yes"]),
    ("scienceqa", "<image>\nContext: N/A\nWhich kind of animal is this?\nA. mammal\nB. bird", ["0"]),
    ("mmbench", "<image>\nA pet photo.\nWhat animal is shown?\nA. cat\nB. dog\nC. bird", ["A"]),
    ("mmbench_test", "<image>\nA pet photo.\nWhat animal is shown?\nA. cat\nB. dog\nC. bird", []),
    ("mme", "<image>\nIs there a dog in this image?" + SHORT, ["Yes"]),
])
def test_first_prompt_of_every_split(roots, key, prompt, answers):
    item = load(roots, key)[0]
    assert item.prompt == prompt and item.answers == answers
    assert item.image_jpeg, key  # the image resolves (path or embedded bytes)


def test_every_split_has_a_prompt_test():
    assert set(LOADERS) == {"vqav2", "vqav2_testdev", "gqa", "vizwiz", "vizwiz_test", "textvqa", "pope", "scienceqa",
                            "mmbench", "mmbench_test", "mme"}


def test_letter_suffix_and_missing_hint(roots):
    sqa = load_scienceqa(roots["scienceqa"], single_pred_prompt=True)
    assert [it.qid for it in sqa] == ["900", "901"]  # the text-only question is not in SQA-IMG
    assert sqa[1].prompt == "<image>\nContext: N/A\nWhich kind of animal is this?\nA. mammal\nB. bird\nC. fish" + LETTER
    assert sqa[1].logged_prompt == sqa[1].prompt and sqa[1].meta["num_options"] == 3
    mmb = load_mmbench(roots["mmbench"], single_pred_prompt=True)
    assert mmb[3].prompt == "<image>\nWhat animal is shown?\nA. cat\nB. dog\nC. bird" + LETTER  # hint "nan"
    assert mmb[3].logged_prompt == "What animal is shown?\nA. cat\nB. dog\nC. bird"  # no image line, no suffix
    assert [it.question_id for it in mmb] == [0, 1000000, 2000000, 1, 1000001, 2000001]


def test_mmbench_options_stop_at_the_first_missing(tmp_path):
    rows = [["index", "question", "hint", "A", "B", "C", "D", "answer", "image"],
            ["5", "Q?", "None", "x", "N/A", "z", "w", "A", "aGk="],
            ["6", "Q?", "NA", "x", "y", "NONE", "w", "A", "aGk="],
            ["7", "Q?", "none of these", "x", "y", "z", "w", "A", "aGk="]]
    (tmp_path / "mmbench_dev_20230712.tsv").write_text("".join("\t".join(r) + "\n" for r in rows))
    prompts = [it.prompt for it in load_mmbench(tmp_path)]
    assert prompts == ["<image>\nQ?\nA. x", "<image>\nQ?\nA. x\nB. y",
                       "<image>\nnone of these\nQ?\nA. x\nB. y\nC. z\nD. w"]
    assert [is_missing(v) for v in (None, "", "nan", "NaN", "NULL", "n/a", "none", " nan", "0")] == \
        [True, True, True, True, True, True, True, False, False]


def test_textvqa_prompt_parse():
    assert textvqa_question("What IS it?\nReference OCR token: a, b\nAnswer briefly.") == "what is it?"
    assert textvqa_question("Reference OCR token: a\nWhat IS it?\nAnswer briefly.") == "what is it?"
    assert textvqa_question("OCR tokens: a b Question: Why Not? Short answer:") == "why not?"
    assert textvqa_question("What is it?\nAnswer briefly.") == "what is it?"
    with pytest.raises(ValueError, match="none of eval_textvqa.py's layouts"):
        textvqa_question("one line only")


def test_textvqa_annotation_found_by_image_and_question(roots):
    items = load(roots, "textvqa")
    assert [(it.qid, it.question_id) for it in items] == [("34602", "0000000000000000"), ("34603", "0000000000000001")]


def test_mme_both_folder_layouts(roots):
    items = load(roots, "mme")
    assert {it.category for it in items} == {"existence", "count", "artwork"}
    art = [it for it in items if it.category == "artwork"]
    assert art[0].image_path.parent.name == "images" and art[0].image_path.is_file()
    assert [it.answers[0] for it in art] == ["Yes", "No", "Yes", "No"]


@pytest.mark.parametrize("bench, file, edit, message", [
    ("pope", "llava_pope_test.jsonl", lambda t: t + "{oops\n", r"llava_pope_test.jsonl line 7: malformed JSON"),
    ("gqa", "llava_gqa_testdev_balanced.jsonl", lambda t: t.replace('"text"', '"txt"', 1),
     r"llava_gqa_testdev_balanced.jsonl line 1: missing field 'text'"),
    ("textvqa", "llava_textvqa_val_v051_ocr.jsonl", lambda t: t.replace("say?", "say?\\nmore", 1),
     r"llava_textvqa_val_v051_ocr.jsonl line 1: prompt .* none of eval_textvqa.py's layouts"),
    ("textvqa", "llava_textvqa_val_v051_ocr.jsonl", lambda t: t.replace("What does", "Where does", 1),
     r"line 1: no annotation with image_id '0000000000000000' and question 'where does the sign say\?'"),
    ("mmbench", "mmbench_dev_20230712.tsv", lambda t: t.replace("index\t", "idx\t", 1), r"missing column\(s\) index"),
    ("mme", "llava_mme.jsonl", lambda t: t.replace("a dog", "a bird", 1),
     r"llava_mme.jsonl line 1: question 'Is there a bird in this image\?' is not in"),
    ("vqav2", "v2_mscoco_val2014_annotations.json", lambda t: t[:-3],
     r"v2_mscoco_val2014_annotations.json: malformed JSON"),
])
def test_malformed_input_names_file_and_record(roots, tmp_path, bench, file, edit, message):
    import shutil

    root = tmp_path / bench
    shutil.copytree(roots[bench], root)
    (root / file).write_text(edit((root / file).read_text()))
    with pytest.raises(ImpDataError, match=message):
        load_benchmark(bench, root)


def test_pope_label_join_error(roots, tmp_path):
    import shutil

    root = tmp_path / "pope"
    shutil.copytree(roots["pope"], root)
    rows = [json.loads(line) for line in (root / "llava_pope_test.jsonl").read_text().splitlines()]
    rows[0]["question_id"] = 999
    (root / "llava_pope_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ImpDataError, match=r"line 1: question 999 \(adversarial\) has no label in .*adversarial"):
        load_benchmark("pope", root)


def test_mmbench_images_past_the_csv_field_limit(tmp_path):
    import base64

    image = base64.b64encode(bytes(range(256)) * 800).decode()  # ~273 KB of base64 in one cell
    rows = [["index", "question", "A", "B", "answer", "image"], ["3", "Q?", "x", "y", "A", image]]
    (tmp_path / "mmbench_dev_20230712.tsv").write_text("".join("\t".join(r) + "\n" for r in rows))
    (item,) = load_mmbench(tmp_path)
    assert item.image_bytes == bytes(range(256)) * 800 and item.prompt == "<image>\nQ?\nA. x\nB. y"
