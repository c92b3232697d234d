"""Fixture mirror: same seed -> same bytes; every source laid out as published (file names, JSON
shapes, zip members); every wild case really is what MIRROR.md says.

Run: pytest tests/test_fixtures.py
"""

import io
import json
import zipfile

import pyarrow.parquet as pq
import pytest
from PIL import Image

from imp_data.fixtures import WRITERS, write_mirror
from tests.test_build_e2e import tree_bytes


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    out = tmp_path_factory.mktemp("mirror")
    summary = write_mirror(out, seed=0)
    return out, summary


def test_same_seed_same_bytes(mirror, tmp_path):
    out, _ = mirror
    again = tmp_path / "again"
    write_mirror(again, seed=0)
    a, b = tree_bytes(out), tree_bytes(again)
    assert sorted(a) == sorted(b) and all(a[k] == b[k] for k in a)
    other = tmp_path / "other"
    write_mirror(other, seed=1)
    assert tree_bytes(other) != a


def test_every_source_present(mirror):
    out, summary = mirror
    assert set(summary["records"]) == set(WRITERS)
    assert all(n > 0 for n in summary["records"].values())
    expected = [
        "llava_665k/llava_v1_5_mix665k.json", "coco/train2017.zip", "gqa/images.zip", "textvqa/train_val_images.zip",
        "vg/images.zip", "vg/images2.zip", "llava_pretrain/blip_laion_cc_sbu_558k.json",
        "llava_pretrain/blip_laion_cc_sbu_558k_meta.json", "llava_pretrain/images.zip", "dvqa/train_qa.json",
        "dvqa/val_easy_qa.json", "dvqa/val_hard_qa.json", "chartqa/ChartQA Dataset/train/train_human.json",
        "chartqa/ChartQA Dataset/train/train_augmented.json", "docvqa/train/train_v1.0_withQT.json",
        "infographicvqa/infographicVQA_train_v1.0.json", "ai2d/questions/0.png.json", "ai2d/categories.json",
        "sharegpt4v/sharegpt4v_instruct_gpt4-vision_cap100k.json", "sharegpt4v/wikiart.zip",
        "laion_gpt4v/data/train-00000-of-00001.parquet", "allava/allava_laion/ALLaVA-Instruct-LAION-4V.json",
        "allava/allava_laion/image_chunks/images_0.zip", "allava/allava_vflan/ALLaVA-Instruct-VFLAN-4V.json",
        "MIRROR.md",
    ]
    missing = [p for p in expected if not (out / p).is_file()]
    assert not missing, missing


def test_published_shapes(mirror):
    out, _ = mirror
    human = (out / "chartqa/ChartQA Dataset/train/train_human.json").read_text()
    assert "\n" not in human, "train_human.json is one compact line"
    assert "\n\t{" in (out / "chartqa/ChartQA Dataset/train/train_augmented.json").read_text(), \
        "augmented is tab-indented"
    doc = json.loads((out / "docvqa/train/train_v1.0_withQT.json").read_text())
    assert isinstance(doc, dict) and isinstance(doc["data"], list) and isinstance(doc["data"][0]["answers"], list)
    dvqa = json.loads((out / "dvqa/train_qa.json").read_text())
    assert set(dvqa[0]) == {"question", "question_id", "template_id", "answer", "image", "answer_bbox"}
    ai2d = json.loads((out / "ai2d/questions/0.png.json").read_text())
    assert isinstance(ai2d["questions"], dict)
    laion = pq.read_table(out / "laion_gpt4v/data/train-00000-of-00001.parquet")
    assert laion.column_names == ["link", "caption", "message_id", "timestamp", "image"]
    assert str(laion.schema.field("image").type) == "null"
    records = json.loads((out / "llava_665k/llava_v1_5_mix665k.json").read_text())
    assert any(isinstance(r["id"], int) for r in records) and any("image" not in r for r in records)
    with zipfile.ZipFile(out / "llava_pretrain/images.zip") as zf:
        assert "00453/004539375.jpg" in zf.namelist()
    with zipfile.ZipFile(out / "sharegpt4v/wikiart.zip") as zf:
        assert all(n.startswith("data/wikiart/images/") for n in zf.namelist())


def _zip_member(path, name):
    with zipfile.ZipFile(path) as zf:
        return zf.read(name)


def test_wild_cases_are_real(mirror):
    out, summary = mirror
    assert summary["wild_cases"] >= 15
    assert Image.open(io.BytesIO(_zip_member(out / "coco/train2017.zip", "train2017/000000000900.jpg"))).mode == "CMYK"
    exif = Image.open(io.BytesIO(_zip_member(out / "coco/train2017.zip", "train2017/000000000901.jpg"))).getexif()
    assert exif.get(0x0112) == 6
    assert Image.open(out / "dvqa/images/bar_train_00000004.png").mode == "I;16"
    rgba = Image.open(out / "ocr_vqa/images/1400319900X.jpg")
    assert rgba.format == "PNG" and rgba.mode == "RGBA"
    palette = Image.open(out / "ocr_vqa/images/1400319901X.jpg")
    assert palette.mode == "P" and "transparency" in palette.info
    assert _zip_member(out / "vg/images2.zip", "VG_100K_2/99.jpg") == b""
    truncated = _zip_member(out / "gqa/images.zip", "images/2499999.jpg")
    with pytest.raises(OSError):
        Image.open(io.BytesIO(truncated)).load()
    table = (out / "MIRROR.md").read_text()
    for case in ("CMYK JPEG", "EXIF-rotated", "16-bit PNG", "zero-byte", "referenced-but-missing", "exact duplicate",
                 "TextCaps", "text-only", "<image> at the end", "empty answer", "one image used by two sources"):
        assert case in table, case
