"""Greedy batched generation for the eval job (`imp_data.train.generate`): a model overfitted on two
training samples answers their questions word for word through the eval interface (raw image bytes
re-rendered, phi2 prompt ending "ASSISTANT:", stop at `</s>`); a batch decodes exactly like one item at a
time, text-only and image items mixed; `load_generate` rebuilds stage-1 and stage-2 runs from disk.

Run: pytest tests/test_train_generate.py
"""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from imp_data.train.config import load_run
from imp_data.train.generate import GenerationItem, build_prompt, load_generate, make_generate
from imp_data.train.loop import build_model, build_tokenizer, forward_loss, make_run_loader, mix_dir, train
from imp_data.train.template import SYSTEM
from tests.train_support import RUNS, demo_data_root, one_thread, read_sample  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def data_root(demo_build, tmp_path_factory):
    return demo_data_root(demo_build[0], tmp_path_factory.mktemp("generate"))


def image_bytes(size, color, fmt) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def test_overfitted_model_answers_its_training_questions(data_root):
    cfg = load_run(RUNS / "tiny_stage2.yaml", ["model.init_projector=null", "train.batch_size=2"])
    tokenizer = build_tokenizer(cfg, data_root, data_root / "runs" / "gen_overfit")
    model = build_model(cfg, tokenizer, data_root)
    batch = next(iter(make_run_loader(cfg, tokenizer, model, data_root)))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(150):
        loss = forward_loss(model, batch, torch.device("cpu"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    items, answers = [], []
    for key in batch["keys"]:
        record, jpeg = read_sample(mix_dir(cfg, data_root), key)
        items.append(GenerationItem(prompt=record["conversations"][0]["value"], image_jpeg=jpeg))
        answers.append(record["conversations"][1]["value"].strip())
    assert make_generate(model, tokenizer, "phi2", max_new_tokens=48)(items) == answers


def test_batched_equals_one_by_one_and_runs_load_from_disk(data_root):
    s1 = train(RUNS / "tiny_stage1.yaml", data_root=data_root, overrides=["name=g1", "train.max_steps=1"])
    s2 = train(RUNS / "tiny_stage2.yaml", data_root=data_root,
               overrides=["name=g2", "train.max_steps=1", "model.init_projector=g1"])
    items = [GenerationItem("What is it?\n<image>", image_bytes((80, 50), (200, 10, 10), "PNG")),
             GenerationItem("Hello there, how are you doing today?"),
             {"prompt": "<image>\nDescribe the picture.", "image_jpeg": image_bytes((30, 90), (10, 200, 10), "JPEG")},
             GenerationItem("Hi")]
    generate = load_generate(s2, max_new_tokens=6, batch_size=3)
    batched = generate(items)
    assert batched == [generate([item])[0] for item in items]
    assert all(isinstance(a, str) and a == a.strip() and "</s>" not in a for a in batched)
    captions = load_generate(s1, max_new_tokens=6)(items[:1] + items[2:3])  # stage 1 only captions images
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    with pytest.raises(ValueError, match="no image_jpeg"):
        generate([GenerationItem("<image>\nWhat is it?")])


def test_prompts():
    assert build_prompt("What is it?\n<image>", True, "phi2") == f"{SYSTEM} USER: <image>\nWhat is it? ASSISTANT:"
    assert build_prompt("What is it?", False, "phi2") == f"{SYSTEM} USER: What is it? ASSISTANT:"
    assert build_prompt("Describe.\n<image>", True, "plain") == "<image>"
