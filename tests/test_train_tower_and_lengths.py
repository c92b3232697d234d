"""Two training details checked against a reference (issue 7): the vision features are SigLIP's penultimate
layer without the post-LayerNorm, every patch token (729 at 384 px / patch 14) — equal to the untruncated
tower's `hidden_states[-2]`; and the over-length policy (`train.overlength`) counts an image as its patch
tokens, truncates from the end to exactly `model_max_length` LLM positions or drops the sample, and the
loader counts what it dropped.

Run: pytest tests/test_train_tower_and_lengths.py
"""

from __future__ import annotations

import polars as pl
import pytest
import torch
from transformers import SiglipVisionConfig, SiglipVisionModel

from imp_data.train.batching import make_encode
from imp_data.train.model import build_vision_tower
from imp_data.train.template import IMAGE_TOKEN_INDEX
from tests.test_train_template import conv, encoded, tok  # noqa: F401  (tok is a fixture)

TINY = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2,
        "patch_size": 14}


@pytest.mark.parametrize("image_size, patches", [(28, 4), (384, 729)])
def test_features_are_the_penultimate_layer_without_post_layernorm(image_size, patches):
    spec = {**TINY, "image_size": image_size}
    torch.manual_seed(0)
    full = SiglipVisionModel(SiglipVisionConfig(**spec)).eval()
    torch.manual_seed(0)  # same construction order: the same random weights
    tower = build_vision_tower(spec)
    assert not any(p.requires_grad for p in tower.parameters()) and not tower.training
    pixels = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        reference = full(pixel_values=pixels, output_hidden_states=True)
        ours = tower(pixel_values=pixels).last_hidden_state
    assert ours.shape == (2, patches, 16)  # every patch token, no pooling, no CLS
    torch.testing.assert_close(ours, reference.hidden_states[-2], rtol=0, atol=0)
    assert not torch.allclose(ours, reference.last_hidden_state)  # not the last layer, not post-LN


def _raw(record: dict) -> dict:
    return {"key": "000000000", "json": record, "pixel_values": torch.zeros(3, 4, 4)}


def test_overlength_truncates_to_max_len_llm_positions_or_drops(tok):  # noqa: F811
    record = {"image": {"path": "x"}, "conversations": conv("<image>\nWhat is it?", "A cat.", "Is it black?", "Yes")}
    ids, labels = encoded(tok, record)
    patches = 10
    fits = len(ids) + patches - 1
    assert make_encode(tok, "phi2", fits, patches)(_raw(record))["truncated"] is False

    max_len = fits - 3
    item = make_encode(tok, "phi2", max_len, patches)(_raw(record))
    assert item["truncated"] is True
    assert item["input_ids"].tolist() == ids[: max_len - (patches - 1)]  # cut from the end ...
    assert item["labels"].tolist() == labels[: max_len - (patches - 1)]  # ... labels with it
    assert len(item["input_ids"]) + patches - 1 == max_len and item["pixel_values"] is not None

    assert make_encode(tok, "phi2", max_len, patches, overlength="drop")(_raw(record)) is None
    with pytest.raises(ValueError, match="valid: truncate, drop"):
        make_encode(tok, "phi2", max_len, patches, overlength="cut")


def test_truncation_past_the_image_drops_its_pixels(tok):  # noqa: F811
    """A cut before the `<image>` position leaves a text-only sample: no pixels go to the model."""
    record = {"image": {"path": "x"}, "conversations": conv("<image>\nWhat is it?", "A cat.")}
    ids, _ = encoded(tok, record)
    position = ids.index(IMAGE_TOKEN_INDEX)
    item = make_encode(tok, "phi2", position, num_patches=1)(_raw(record))
    assert item["truncated"] and item["input_ids"].tolist() == ids[:position] and item["pixel_values"] is None


def test_loader_counts_what_the_length_policy_dropped(demo_build):
    from imp_data.train.batching import make_collate
    from imp_data.train.data import make_loader
    from imp_data.train.tokenizer import train_tiny_tokenizer

    demo_root, _ = demo_build
    mix_dir = demo_root / "mixes" / "demo_stage2"
    tokenizer = train_tiny_tokenizer(["What is it? A cat."], vocab_size=300)
    encode = make_encode(tokenizer, "phi2", max_len=64, num_patches=729, overlength="drop")  # no image fits
    loader = make_loader(mix_dir, encode=encode, collate=make_collate(tokenizer), batch_size=4, seed=0,
                         drop_last=False)
    seen = sum(len(batch["input_ids"]) for batch in loader)
    index = pl.read_parquet(mix_dir / "index.parquet")
    with_image = index.filter(pl.col("jpg_offset").is_not_null()).height
    assert loader.dropped >= with_image > 0 and seen + loader.dropped == index.height
