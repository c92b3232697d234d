"""The lmms-lab Hugging Face Hub parquet copies of the benchmarks (`imp_data.eval.lmms`, `lmms_parquet`), read
from fixtures in the published repo layout (`tests.lmms_fixtures`): each benchmark's first prompt and
gold answers, literally, and every item equal to the LLaVA-layout loader's for the same question; a perfect
model scores 100 through the eval runner; splits are found by either layout and the LLaVA one wins when both
are there; malformed parquet, a missing column and an image without bytes raise errors naming the file and
the column or row; `list_images` lists the images embedded in the parquet files.

Run: pytest tests/test_eval_lmms.py
"""

from __future__ import annotations

import io
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from imp_data.core.errors import ImpDataError
from imp_data.eval.benchmarks import list_images
from imp_data.eval.lmms import LAYOUTS, load_lmms, load_mmbench, load_scienceqa
from imp_data.eval.runner import run_eval
from imp_data.eval.splits import SPLITS, find_splits
from imp_data.fixtures.eval_benchmarks import write_benchmark_fixtures
from tests.lmms_fixtures import write_lmms_fixtures

SHORT = "\nAnswer the question using a single word or phrase."
UNANSWERABLE = "\nWhen the provided information is insufficient, respond with 'Unanswerable'." + SHORT
LETTER = "\nAnswer with the option's letter from the given choices directly."
FIELDS = ("benchmark", "qid", "prompt", "answers", "category", "meta", "question_id", "logged_prompt")


@pytest.fixture(scope="module")
def lmms(tmp_path_factory):
    return write_lmms_fixtures(tmp_path_factory.mktemp("lmms"))


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    return write_benchmark_fixtures(tmp_path_factory.mktemp("llava"))


def oracle(items, max_new_tokens=None):
    return ["ABCDE"[int(it.answers[0])] if it.benchmark == "scienceqa" else it.answers[0] for it in items]


@pytest.mark.parametrize("name, qid, prompt, answers", [
    ("vqav2", "100", "<image>\nWhat color is the sky?" + SHORT, ["blue"] * 7 + ["light blue"] * 3),
    ("gqa", "200", "<image>\nWhat color is the sky?" + SHORT, ["blue"]),
    ("vizwiz", "VizWiz_val_00000000.jpg", "<image>\nWhat color is the sky?" + UNANSWERABLE,
     ["blue"] * 7 + ["unanswerable"] * 3),
    ("textvqa", "34602", "<image>\nWhat does the sign say?\nReference OCR token: open, 0" + SHORT,
     ["open"] * 7 + ["opened"] * 3),
    ("pope", "adversarial/1", "<image>\nIs there a dog in the image?" + SHORT, ["yes"]),
    ("scienceqa", "ScienceQA-IMG/test-00000-of-00001.parquet#0",
     "<image>\nContext: N/A\nWhich kind of animal is this?\nA. mammal\nB. bird", ["0"]),
    ("mmbench", "0", "<image>\nA pet photo.\nWhat animal is shown?\nA. cat\nB. dog\nC. bird", ["A"]),
    ("mme", "existence/000000000000.jpg#Is there a dog in this image?",
     "<image>\nIs there a dog in this image?" + SHORT, ["Yes"]),
])
def test_first_prompt_and_gold(lmms, name, qid, prompt, answers):
    item = SPLITS[name].load(lmms[name])[0]
    assert (item.qid, item.prompt, item.answers) == (qid, prompt, answers)
    assert Image.open(io.BytesIO(item.image_jpeg)).size == (96, 72)  # the embedded image, read on demand


def test_letter_suffix_categories_and_flags(lmms):
    assert [it.meta["num_options"] for it in load_lmms("scienceqa", lmms["scienceqa"])] == [2, 3]
    assert load_scienceqa(lmms["scienceqa"], single_pred_prompt=True)[1].prompt == \
        "<image>\nContext: N/A\nWhich kind of animal is this?\nA. mammal\nB. bird\nC. fish" + LETTER
    mmb = load_mmbench(lmms["mmbench"], single_pred_prompt=True)
    assert mmb[3].prompt == "<image>\nWhat animal is shown?\nA. cat\nB. dog\nC. bird" + LETTER  # hint null, D "nan"
    assert [it.question_id for it in mmb] == [0, 1000000, 2000000, 1, 1000001, 2000001]
    pope = load_lmms("pope", lmms["pope"])
    assert [it.qid for it in pope] == [f"{c}/{k}" for c in ("adversarial", "popular", "random") for k in (1, 2)]
    assert [it.category for it in pope][::2] == ["adversarial", "popular", "random"]
    with pytest.raises(ValueError, match="no lmms-lab copy of benchmark split 'vqav2_testdev'; valid: vqav2"):
        load_lmms("vqav2_testdev", lmms["vqav2"])


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_same_items_as_the_llava_layout(lmms, llava, name):
    ours, theirs = SPLITS[name].load(lmms[name]), SPLITS[name].load(llava[name])
    assert SPLITS[name].layout(lmms[name]) == "lmms-lab" and SPLITS[name].layout(llava[name]) == "llava"
    # POPE's ids restart per category and ScienceQA's copy has no problem id: those two name items their own way
    fields = [f for f in FIELDS if name not in ("pope", "scienceqa") or f not in ("qid", "question_id")]
    assert [[getattr(it, f) for f in fields] for it in ours] == [[getattr(it, f) for f in fields] for it in theirs]


def test_perfect_model_scores_100(lmms, tmp_path):
    results = run_eval(lmms, oracle, tmp_path)
    assert set(results) == set(lmms)
    for name, result in results.items():
        assert result["score"] == pytest.approx(600.0 if name == "mme" else 100.0), name  # MME: 3 categories x 200
    assert results["mmbench"]["submission"] is None  # the dev upload copies the TSV's columns: no TSV here
    assert (tmp_path / "answers" / "pope.jsonl").read_text().count('"question_id": "popular/2"') == 1


def test_splits_found_by_either_layout_llava_first(lmms, llava, tmp_path):
    assert list(find_splits(lmms["pope"].parent)) == [k for k in SPLITS if k in LAYOUTS]
    both = tmp_path / "pope"
    shutil.copytree(llava["pope"], both)
    shutil.copytree(lmms["pope"] / "data", both / "data")
    assert SPLITS["pope"].layout(both) == "llava"
    assert all(it.image_path is not None and it.qid == str(int(it.qid)) for it in SPLITS["pope"].load(both))
    (tmp_path / "empty" / "gqa").mkdir(parents=True)
    with pytest.raises(ImpDataError, match=r"gqa: none of llava_gqa_testdev_balanced.jsonl, nor lmms-lab's "
                                           r"testdev_balanced_instructions/testdev-\*.parquet"):
        find_splits(tmp_path / "empty")
    half = tmp_path / "half"  # GQA needs both configs
    shutil.copytree(lmms["gqa"] / "testdev_balanced_instructions", half / "testdev_balanced_instructions")
    assert SPLITS["gqa"].layout(half) is None


def _copy(lmms, name, tmp_path):
    root = tmp_path / name
    shutil.copytree(lmms[name], root)
    return root


def test_malformed_parquet_names_the_file(lmms, tmp_path):
    root = _copy(lmms, "pope", tmp_path)
    (root / "data" / "test-00001-of-00003.parquet").write_bytes(b"<html>not found</html>")
    with pytest.raises(ImpDataError, match=r"test-00001-of-00003.parquet: not a readable parquet file"):
        load_lmms("pope", root)
    with pytest.raises(ImpDataError, match=r"test-00001-of-00003.parquet: not a readable parquet file"):
        list(list_images("pope", root))


@pytest.mark.parametrize("name, file, column", [
    ("pope", "data/test-00002-of-00003.parquet", "category"),
    ("textvqa", "data/validation-00000-of-00001.parquet", "ocr_tokens"),
    ("gqa", "testdev_balanced_images/testdev-00000-of-00001.parquet", "image"),
    ("mme", "data/test-00003-of-00004-a25d0003.parquet", "question_id"),
])
def test_missing_column_names_file_and_column(lmms, tmp_path, name, file, column):
    root = _copy(lmms, name, tmp_path)
    table = pq.read_table(root / file)
    pq.write_table(table.drop_columns([column]), root / file)
    with pytest.raises(ImpDataError, match=rf"{file}: missing column\(s\) '{column}' \(has "):
        load_lmms(name, root)


def test_bad_values_name_file_row_and_column(lmms, tmp_path):
    root = _copy(lmms, "vqav2", tmp_path)
    file = root / "data" / "validation-00001-of-00002.parquet"
    table = pq.read_table(file)
    images = table.column("image").to_pylist()
    images[0]["bytes"] = None
    table = table.set_column(table.schema.get_field_index("image"), table.schema.field("image"),
                             pa.array(images, table.schema.field("image").type))
    pq.write_table(table.set_column(table.schema.get_field_index("question"), "question", pa.array([None])), file)
    with pytest.raises(ImpDataError, match=r"validation-00001-of-00002.parquet row 0: column 'question' is None"):
        load_lmms("vqav2", root)
    pq.write_table(table, file)
    item = load_lmms("vqav2", root)[2]
    with pytest.raises(ImpDataError, match=r"validation-00001-of-00002.parquet row 0: column 'image' holds no "
                                           r"embedded image bytes"):
        _ = item.image_jpeg


def test_list_images_lists_the_embedded_images(lmms, llava, tmp_path):
    names = [n for n, _ in list_images("pope", lmms["pope"])]
    assert names == [f"data/test-0000{k}-of-00003.parquet#{r}" for k in range(3) for r in range(2)]
    # every split (TextVQA's train shard too); GQA's images live in the images config only
    assert [n for n, _ in list_images("textvqa", lmms["textvqa"])][0] == "data/train-00000-of-00001.parquet#0"
    assert {n.split("#")[0] for n, _ in list_images("gqa", lmms["gqa"])} == {
        "testdev_balanced_images/testdev-00000-of-00001.parquet"}
    # the bytes are the images the loader's items read, across shards and row groups
    for name in ("vqav2", "mmbench", "mme"):
        listed = [data for _, data in list_images(name, lmms[name])]
        assert [it.image_jpeg for it in SPLITS[name].load(lmms[name])] == listed, name
        assert all(Image.open(io.BytesIO(b)).format == "JPEG" for b in listed)
    # both layouts in one folder: the LLaVA files and the parquet images; snapshot_download's .cache skipped
    both = tmp_path / "mmbench"
    shutil.copytree(llava["mmbench"], both)
    shutil.copytree(lmms["mmbench"] / "en", both / "en")
    shutil.copytree(lmms["mmbench"] / "en", both / ".cache" / "huggingface" / "en")
    names = [n for n, _ in list_images("mmbench", both)]
    assert len(names) == 12 + 6 and names[0] == "mmbench_dev_20230712.tsv#0"
    assert names[-1] == "en/dev-00000-of-00001.parquet#5"
