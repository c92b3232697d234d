"""LLaVA-format adapters (llava_665k, llava_pretrain, sharegpt4v, allava): real published records in,
exact candidates out; ids as published strings; per-record problems as reasons; the token option.

Run: pytest tests/test_sources_llava.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imp_data.sources.base import Candidate, Problem
from imp_data.sources.registry import get_adapter
from tests.source_support import SAMPLES, read, write


def test_llava_665k_real_records():
    out = read("llava_665k", SAMPLES, ["llava665k.json"])
    assert out == [
        Candidate(
            source_id="000000033471",
            image="coco/train2017/000000033471.jpg",
            conversations=[
                {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
                {"from": "gpt", "value": "The bus in the image is white and red."},
                {"from": "human", "value": "What feature can be seen on the back of the bus?"},
                {"from": "gpt", "value": "The back of the bus features an advertisement."},
                {"from": "human", "value": "Is the bus driving down the street or pulled off to the side?"},
                {"from": "gpt",
                 "value": "The bus is driving down the street, which is crowded with people and other vehicles."},
            ],
            meta={"file_index": 0},  # the position in the published file, for position rules
            where="llava665k.json record 0",
        ),
        Candidate(
            source_id="2327515",  # published as the int 2327515
            image="gqa/images/2327515.jpg",
            conversations=[
                {"from": "human", "value": "<image>\nAre there scarves or hats that are yellow?\n"
                                           "Answer the question using a single word or phrase."},
                {"from": "gpt", "value": "Yes"},
                {"from": "human", "value": "Does the man wear shorts?"},
                {"from": "gpt", "value": "No"},
            ],
            meta={"file_index": 1},
            where="llava665k.json record 1",
        ),
    ]


def test_llava_pretrain_real_records_keep_leading_zeros_and_token_at_the_end():
    out = read("llava_pretrain", SAMPLES, ["llava_pretrain.json"])
    assert out == [
        Candidate("004539375", "00453/004539375.jpg", [
            {"from": "human", "value": "Render a clear and concise summary of the photo.\n<image>"},
            {"from": "gpt", "value": "select luxury furniture 3 - inch gel memory foam mattress topper"},
        ], {}, "llava_pretrain.json record 0"),
        Candidate("002239345", "00223/002239345.jpg", [
            {"from": "human", "value": "Write a terse but informative summary of the picture.\n<image>"},
            {"from": "gpt", "value": "a grey watch with an army style strap"},
        ], {}, "llava_pretrain.json record 1"),
    ]


def test_allava_real_records_keep_caption_and_url_in_meta():
    out = read("allava", SAMPLES, ["allava.json"])
    assert [c.source_id for c in out] == ["allava_laion_cap_100277305", "allava_vflan_cap_100000",
                                          "allava_laion_inst_100277305", "allava_vflan_inst_9"]
    assert out[2] == Candidate(
        "allava_laion_inst_100277305", "allava_laion/images/100277305.jpeg", [
            {"from": "human", "value": "<image>\nHow does the inclusion of gemstones affect the overall aesthetic "
                                       "and possible value of the ring?"},
            {"from": "gpt", "value": "The inclusion of gemstones along the edges of the leaf design enhances the "
                                     "ring's aesthetic by adding a touch of brilliance and luxury. …"},
        ],
        {"original_caption": "190952cz Pandora Tropical Palm Leaf Ring",
         "url": "https://theartofpandora.com/wp-content/uploads/2016/10/190952CZ-1-600x600.jpg"},
        "allava.json record 2",
    )
    assert out[3] == Candidate(
        "allava_vflan_inst_9",
        "allava_vflan/images/images_191task_1k/VQA-E+visual_question_answering_574_COCO_train2014_000000119456.jpg",
        [
            {"from": "human", "value": "<image>\nYou are provided with an image and a question related to the image. "
                                       "Answer the question based on the information given in the image.\n\n"
                                       "Is bigfoot in the picture?"},
            {"from": "gpt", "value": "The creature in the image is not Bigfoot, also known as Sasquatch. …"},
        ],
        {},
        "allava.json record 3",
    )


def test_allava_defaults_are_the_instruct_files():
    assert get_adapter("allava").default_files == [
        "allava_laion/ALLaVA-Instruct-LAION-4V.json", "allava_vflan/ALLaVA-Instruct-VFLAN-4V.json"]


def test_sharegpt4v_keeps_every_image_prefix(tmp_path):
    prefixes = ["coco/train2017/1.jpg", "sam/images/sa_1.jpg", "llava/llava_pretrain/images/00453/004539375.jpg",
                "wikiart/images/a.jpg", "share_textvqa/images/b.jpg", "web-celebrity/images/c.jpg",
                "web-landmark/images/d.jpg"]
    records = [{"id": Path(p).stem, "image": p, "conversations": [
        {"from": "human", "value": "<image>\nDescribe this image in detail."},
        {"from": "gpt", "value": f"Caption {i}."}]}
        for i, p in enumerate(prefixes)]
    name = write(tmp_path, "sharegpt4v_instruct_gpt4-vision_cap100k.json", records)
    out = read("sharegpt4v", tmp_path, [name])
    assert [c.image for c in out] == prefixes
    assert out[6] == Candidate("d", "web-landmark/images/d.jpg", records[6]["conversations"], {},
                               "sharegpt4v_instruct_gpt4-vision_cap100k.json record 6")


def test_text_only_ids_and_extras(tmp_path):
    name = write(tmp_path, "mix.json", [
        {"id": "sharegpt_0", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {"id": 7, "image": "gqa/images/7.jpg", "conversations": []},
        {"id": "007", "image": "x.jpg", "conversations": [], "weight": 2},
    ])
    out = read("llava_665k", tmp_path, [name])
    assert out[0] == Candidate("sharegpt_0", None,
                               [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
                               {"file_index": 0}, "mix.json record 0")
    assert (out[1].source_id, out[2].source_id, out[2].meta) == ("7", "007", {"weight": 2, "file_index": 2})


@pytest.mark.parametrize("record, reason, sid", [
    ({"image": "a.jpg", "conversations": []}, "missing_field", "@bad.json:0"),
    ({"id": "", "conversations": []}, "missing_field", "@bad.json:0"),
    ({"id": 1.5, "conversations": []}, "bad_type", "@bad.json:0"),
    ({"id": True, "conversations": []}, "bad_type", "@bad.json:0"),
    ({"id": "a"}, "missing_field", "a"),
    ({"id": "a", "conversations": "hi"}, "bad_type", "a"),
    ({"id": "a", "image": 3, "conversations": []}, "bad_type", "a"),
    (["not", "an", "object"], "bad_type", "@bad.json:0"),
])
def test_bad_records_are_problems(tmp_path, record, reason, sid):
    name = write(tmp_path, "bad.json", [record])
    [problem] = read("llava_665k", tmp_path, [name])
    assert isinstance(problem, Problem)
    assert (problem.reason, problem.source_id) == (reason, sid)
    assert problem.detail.startswith("bad.json record 0: ")


def test_conversation_content_is_not_repaired(tmp_path):
    """Turn rules (gpt first, empty answers) are the normaliser's: the adapter passes them through."""
    conv = [{"from": "gpt", "value": "Hello"}, {"from": "human", "value": "<image>\n"}]
    name = write(tmp_path, "a.json", [{"id": "x", "image": "x.jpg", "conversations": conv}])
    assert read("llava_665k", tmp_path, [name])[0].conversations == conv


def test_move_image_token_first_option(tmp_path):
    def rec(i, value):
        return {"id": str(i), "image": "a.jpg", "conversations": [{"from": "human", "value": value},
                                                                   {"from": "gpt", "value": "ok"}]}
    values = ["What is unusual?\n<image>", "<image>\nAlready first.", "Two <image> <image>", "No token at all"]
    name = write(tmp_path, "a.json", [rec(i, v) for i, v in enumerate(values)])
    kept = read("llava_665k", tmp_path, [name])
    assert [c.conversations[0]["value"] for c in kept] == values  # default: as published
    moved = read("llava_665k", tmp_path, [name], move_image_token_first=True)
    assert [c.conversations[0]["value"] for c in moved] == [
        "<image>\nWhat is unusual?", "<image>\nAlready first.", "Two <image> <image>", "No token at all"]
    assert moved[0].conversations[1] == {"from": "gpt", "value": "ok"}
