"""Every adapter over the fixture mirror (`imp-data fixtures`, seed 0), with the demo recipe's files and
options: named records come out exactly, the mirror's wild cases become the expected problems, and
normalising each source reconciles (read = normalized + rejected) with the expected reject reasons.

Run: pytest tests/test_sources_mirror.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imp_data.core.recipe import load_recipe
from imp_data.fixtures import write_mirror
from imp_data.normalize import normalize_records
from imp_data.sources.base import Candidate, Problem, resolve_files
from imp_data.sources.registry import ADAPTERS

ROOT = Path(__file__).resolve().parent.parent
SHORT = "Answer the question using a single word or phrase."
MC = "Answer with the option's letter from the given choices directly."
GPT4V_TAIL = ("The colours are vivid, and the composition places the main subject near the centre of the frame, "
              "with soft light from the left.")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, list]:
    """source -> the adapter's records over the mirror, read as the demo recipe configures it."""
    mirror = tmp_path_factory.mktemp("mirror")
    write_mirror(mirror, seed=0)
    recipe = load_recipe(ROOT / "manifests" / "demo.yaml")
    out = {}
    for name, spec in recipe.sources.items():
        adapter = ADAPTERS[spec.adapter]
        root = mirror / name
        files = [p.relative_to(root).as_posix() for p in resolve_files(root, spec.files or adapter.default_files)]
        out[name] = list(adapter.read(root, files, adapter.parse_options(spec.options)))
    return out


def by_id(records: list, source_id: str):
    [found] = [r for r in records if r.source_id == source_id and isinstance(r, Candidate)]
    return found


def test_llava_665k(outputs):
    out = outputs["llava_665k"]
    assert by_id(out, "000000000777") == Candidate(
        "000000000777", "coco/train2017/000000000777.jpg",
        [{"from": "human", "value": "What is unusual about this image?\n<image>"},
         {"from": "gpt", "value": "A cat drives a car."}], {"file_index": 29}, "llava_v1_5_mix665k.json record 29")
    assert by_id(out, "sharegpt_0") == Candidate(
        "sharegpt_0", None,
        [{"from": "human", "value": "Write a haiku about data."}, {"from": "gpt", "value": "Rows of tidy shards / ..."},
         {"from": "human", "value": "Now one about GPUs."}, {"from": "gpt", "value": "Warm silicon hum / ..."}],
        {"file_index": 32}, "llava_v1_5_mix665k.json record 32")
    assert [r.source_id for r in out].count("000000033471") == 4  # three conversations + an exact copy
    assert by_id(out, "2327515").image == "gqa/images/2327515.jpg"


def test_llava_pretrain(outputs):
    assert outputs["llava_pretrain"][2] == Candidate(
        "560041446", "56004/560041446.jpg",
        [{"from": "human", "value": "Share a concise interpretation of the image provided.\n<image>"},
         {"from": "gpt", "value": "a bowl of fresh fruit"}], {}, "blip_laion_cc_sbu_558k.json record 2")


def test_dvqa_short_answer_suffix_and_the_empty_answer(outputs):
    out = outputs["dvqa"]
    assert out[0] == Problem("120000001", "empty_answer", "train_qa.json record 2: 'answer' is blank")
    assert by_id(out, "bar_train_00000000.png") == Candidate(  # LLaVA-1.5's suffix, first question only
        "bar_train_00000000.png", "bar_train_00000000.png",
        [{"from": "human", "value": "<image>\nHow many bars are there?\nAnswer the question using a single word or "
                                    "phrase."}, {"from": "gpt", "value": "3"},
         {"from": "human", "value": "Is the value of bond larger than cloud?"}, {"from": "gpt", "value": "no"}],
        {"split_file": "train_qa", "question_ids": ["120000000", "120000002"],
         "template_ids": ["structure", "reasoning"]},
        "train_qa.json record 1")
    assert len([r for r in out if isinstance(r, Candidate)]) == 7  # images of the train split only


def test_chartqa(outputs):
    assert by_id(outputs["chartqa"], "7000.png") == Candidate(
        "7000.png", "7000.png",
        [{"from": "human", "value": f"<image>\nWhat is the highest value in the chart?\n{SHORT}"},
         {"from": "gpt", "value": "41"},
         {"from": "human", "value": "Is the line increasing?"}, {"from": "gpt", "value": "Yes"}],
        {"split_file": "train_human", "question_ids": ["train_human/4", "train_human/5"]},
        "ChartQA Dataset/train/train_human.json record 4")


def test_docvqa_most_common_answer(outputs):
    assert by_id(outputs["docvqa"], "documents/abcd0000_1.png") == Candidate(
        "documents/abcd0000_1.png", "documents/abcd0000_1.png",
        [{"from": "human", "value": f"<image>\nwhat is the date mentioned in this letter?\n{SHORT}"},
         {"from": "gpt", "value": "3/4/95"},
         {"from": "human", "value": "who is the sender?"}, {"from": "gpt", "value": "R. Smith"}],
        {"docId": 500, "data_split": "train", "question_ids": ["4000", "4001"], "question_types": [["form"], ["form"]]},
        "train/train_v1.0_withQT.json record 1")


def test_ai2d_string_index(outputs):
    assert by_id(outputs["ai2d"], "images/1.png") == Candidate(
        "images/1.png", "images/1.png",
        [{"from": "human",
          "value": f"<image>\nWhich stage comes after the egg?\nA. larva\nB. pupa\nC. adult\nD. egg\n{MC}"},
         {"from": "gpt", "value": "C"},
         {"from": "human",
          "value": "What does the diagram show?\nA. life cycle\nB. food web\nC. moon phases\nD. water cycle"},
         {"from": "gpt", "value": "A"}],
        {"abc_label": False, "question_ids": ["1.png-0", "1.png-1"]},
        "questions/1.png.json question 'Which stage comes after the egg?'")


def test_infographicvqa(outputs):
    assert by_id(outputs["infographicvqa"], "30000.jpeg") == Candidate(
        "30000.jpeg", "30000.jpeg",
        [{"from": "human", "value": f"<image>\nWhich platform is most used?\n{SHORT}"},
         {"from": "gpt", "value": "pinterest"}],
        {"data_split": "train", "ocr_output_file": "30000.json", "question_ids": ["70000"],
         "answer_types": [["single span"]]},
        "infographicVQA_train_v1.0.json record 1")
    assert [r.source_id for r in outputs["infographicvqa"]] == ["20471.jpeg", "30000.jpeg", "30001.jpeg", "30002.jpeg"]


def test_sharegpt4v(outputs):
    assert by_id(outputs["sharegpt4v"], "004539375") == Candidate(
        "004539375", "llava/llava_pretrain/images/00453/004539375.jpg",
        [{"from": "human", "value": "<image>\nWhat do you see happening in this image?"},
         {"from": "gpt", "value": f"The image shows a mattress topper. {GPT4V_TAIL}"}],
        {}, "sharegpt4v_instruct_gpt4-vision_cap100k.json record 1")


def test_laion_gpt4v(outputs):
    out = outputs["laion_gpt4v"]
    assert out[0] == Candidate(
        "1180000000000000000", "https://laion-fixture.invalid/img/00000.jpg",
        [{"from": "human", "value": "<image>\nHow would you describe the image to someone who cannot see it?"},
         {"from": "gpt", "value": f"The image shows a vintage typewriter. {GPT4V_TAIL}"}],
        {"timestamp": "2023-11-01T12:00:00Z"}, "data/train-00000-of-00001.parquet row 0")
    assert out[5] == Problem("1180000000000039595", "empty_answer",
                             "data/train-00000-of-00001.parquet row 5: empty caption")


def test_allava_reads_the_instruct_files_only(outputs):
    out = outputs["allava"]
    assert all("_inst_" in r.source_id for r in out) and len(out) == 14
    assert by_id(out, "allava_laion_inst_100277305") == Candidate(
        "allava_laion_inst_100277305", "allava_laion/images/100277305.jpeg",
        [{"from": "human", "value": "<image>\nHow does the inclusion of gemstones affect the overall aesthetic and "
                                    "possible value of the ring?"},
         {"from": "gpt", "value": "The inclusion of gemstones along the edges of the leaf design enhances the ring's "
                                  "aesthetic by adding a touch of brilliance and luxury. \u2026"}],
        {"original_caption": "190952cz Pandora Tropical Palm Leaf Ring",
         "url": "https://theartofpandora.com/wp-content/uploads/2016/10/190952CZ-1-600x600.jpg"},
        "allava_laion/ALLaVA-Instruct-LAION-4V.json record 0")
    assert by_id(out, "allava_vflan_inst_9") == Candidate(
        "allava_vflan_inst_9",
        "allava_vflan/images/images_191task_1k/VQA-E+visual_question_answering_574_COCO_train2014_000000119456.jpg",
        [{"from": "human", "value": "<image>\nYou are provided with an image and a question related to the image. "
                                    "Answer the question based on the information given in the image.\n\n"
                                    "Is bigfoot in the picture?"},
         {"from": "gpt", "value": "The creature in the image is not Bigfoot, also known as Sasquatch. \u2026"}],
        {}, "allava_vflan/ALLaVA-Instruct-VFLAN-4V.json record 0")


EXPECTED_REJECTS = {
    "llava_665k": {"bad_roles": 1, "duplicate_record": 1, "empty_value": 1},
    "dvqa": {"empty_answer": 1},
    "laion_gpt4v": {"empty_answer": 1},
}


def test_every_source_normalises_with_only_the_wild_cases_rejected(outputs, tmp_path):
    for source, records in outputs.items():
        counts = normalize_records(source, records, tmp_path / f"{source}.parquet", tmp_path / f"{source}-rej.parquet")
        assert counts.read == len(records) == counts.normalized + sum(counts.rejected.values())
        assert counts.rejected == EXPECTED_REJECTS.get(source, {}), source
