"""Imp's templates and label masks (TRAINING §3): for each case the supervised tokens are exactly the
assistant answers each followed by `</s>` (phi2), or the caption + newline (plain), and everything else
— system prompt, USER turns, "ASSISTANT:", the image placeholder — is -100.

Run: pytest tests/test_train_template.py
"""

import pytest

from imp_data.train.template import (IGNORE_INDEX, IMAGE_TOKEN_INDEX, SYSTEM, encode_sample, prompt_phi2,
                                     render_phi2, tokenizer_image_token)
from imp_data.train.tokenizer import train_tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return train_tiny_tokenizer(["What is in the image? A cat sits on a mat. Is it black? Yes. Hello there."] * 20,
                                vocab_size=400)


def supervised_segments(enc, tok) -> list[str]:
    segments, current = [], []
    for token, label in zip(enc.input_ids, enc.labels):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            segments.append(tok.decode(current))
            current = []
    if current:
        segments.append(tok.decode(current))
    return segments


def conv(*values):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


def test_render_matches_vicuna_v1():
    text = render_phi2(conv("<image>\nWhat is it?", "A cat.", "Is it black?", "Yes"), has_image=True)
    assert text == (f"{SYSTEM} USER: <image>\nWhat is it? ASSISTANT: A cat.</s>USER: Is it black? ASSISTANT: Yes</s>")
    assert prompt_phi2("What is it?\n<image>", True) == f"{SYSTEM} USER: <image>\nWhat is it? ASSISTANT:"


def test_single_turn_with_image(tok):
    enc = encode_sample({"image": {"path": "x"}, "conversations": conv("<image>\nWhat is it?", "A cat.")}, tok, "phi2")
    assert not enc.mismatch
    assert enc.input_ids.count(IMAGE_TOKEN_INDEX) == 1
    assert supervised_segments(enc, tok) == [" A cat.</s>"]
    # everything up to and including "ASSISTANT:" is masked
    prefix = tokenizer_image_token(f"{SYSTEM} USER: <image>\nWhat is it? ASSISTANT:", tok)
    assert enc.labels[: len(prefix)] == [IGNORE_INDEX] * len(prefix)


def test_multi_turn(tok):
    enc = encode_sample({"image": {"path": "x"}, "conversations": conv(
        "<image>\nWhat is it?", "A cat.", "Is it black?", "Yes", "Where is it?", "On a mat.")}, tok, "phi2")
    assert supervised_segments(enc, tok) == [" A cat.</s>", " Yes</s>", " On a mat.</s>"]
    assert enc.labels[-1] == tok.eos_token_id == tok.convert_tokens_to_ids("</s>")


def test_text_only(tok):
    enc = encode_sample({"image": None, "conversations": conv("Hello there", "Hi.", "Is it black?", "No")}, tok, "phi2")
    assert IMAGE_TOKEN_INDEX not in enc.input_ids
    assert supervised_segments(enc, tok) == [" Hi.</s>", " No</s>"]


def test_image_at_end_of_prompt_moves_to_front(tok):
    at_end = encode_sample({"image": {"path": "x"}, "conversations": conv("What is it?\n<image>", "A cat.")}, tok, "phi2")
    at_front = encode_sample({"image": {"path": "x"}, "conversations": conv("<image>\nWhat is it?", "A cat.")}, tok, "phi2")
    assert at_end.input_ids == at_front.input_ids and at_end.labels == at_front.labels
    assert supervised_segments(at_end, tok) == [" A cat.</s>"]


def test_plain_stage1(tok):
    enc = encode_sample({"image": {"path": "x"}, "conversations": conv("Describe briefly.\n<image>", "a cat on a mat")},
                        tok, "plain")
    assert enc.input_ids[0] == IMAGE_TOKEN_INDEX and enc.labels[0] == IGNORE_INDEX
    assert tok.decode(enc.input_ids[1:]) == "a cat on a mat\n"  # the human text is discarded
    assert enc.labels[1:] == enc.input_ids[1:]
