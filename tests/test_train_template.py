"""Imp's templates and label masks (docs/training.md §2-3), checked against hand-computed token and label lists.

The expectations use a word-level tokenizer built here with GPT-2's byte-level pre-tokenizer, so every
token is predictable ("Ġ" marks a leading space, "Ċ" a newline) while the token boundaries behave like
phi-2's: text before `<image>` ends in a lone "Ġ", and "ASSISTANT: A" splits as "ASSISTANT", ":", "ĠA" —
the case behind preprocess_phi2's `instruction_len = len(tok(parts[0])) - 1`. Covered: single turn with
an image, multi-turn, text-only, `<image>` at the end of the prompt, stage-1 plain; plus the tiny BPE
tokenizer's phi-2 setup.

Run: pytest tests/test_train_template.py
"""

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from imp_data.train.template import IGNORE_INDEX, IMAGE_TOKEN_INDEX, SYSTEM, encode_sample, prompt_phi2, render_phi2
from imp_data.train.tokenizer import load_tokenizer, setup_phi2_tokenizer, train_tiny_tokenizer

IMG = "<IMG>"  # stands for IMAGE_TOKEN_INDEX in the expected lists
SYSTEM_TOKENS = ["A", "Ġchat", "Ġbetween", "Ġa", "Ġcurious", "Ġuser", "Ġand", "Ġan", "Ġartificial",
                 "Ġintelligence", "Ġassistant", ".", "ĠThe", "Ġassistant", "Ġgives", "Ġhelpful", ",", "Ġdetailed",
                 ",", "Ġand", "Ġpolite", "Ġanswers", "Ġto", "Ġthe", "Ġuser", "'s", "Ġquestions", "."]
WORDS = SYSTEM_TOKENS + ["ĠUSER", "USER", ":", "Ġ", "Ċ", "What", "Ġis", "Ġit", "?", "ĠASSISTANT", "ĠA", "Ġcat",
                         "ĠIs", "Ġblack", "ĠYes", "ĠWhere", "ĠOn", "Ġmat", "ĠHello", "Ġthere", "ĠHi", "ĠNo",
                         "a", "Ġon", "Describe", "Ġbriefly"]


@pytest.fixture(scope="module")
def tok():
    vocab = {"<|endoftext|>": 0}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return setup_phi2_tokenizer(PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<|endoftext|>"))


def ids(tok, tokens: list[str]) -> list[int]:
    out = [IMAGE_TOKEN_INDEX if t == IMG else tok.convert_tokens_to_ids(t) for t in tokens]
    assert tok.unk_token_id not in out, f"a token of {tokens} is not in the test vocabulary"
    return out


def expect(tok, *segments: tuple[str, list[str]]) -> tuple[list[int], list[int]]:
    """("mask" | "train", tokens) segments -> (input_ids, labels)."""
    input_ids, labels = [], []
    for kind, tokens in segments:
        input_ids += ids(tok, tokens)
        labels += [IGNORE_INDEX] * len(tokens) if kind == "mask" else ids(tok, tokens)
    return input_ids, labels


def conv(*values):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


def encoded(tok, record, template="phi2"):
    enc = encode_sample(record, tok, template)
    assert not enc.mismatch
    return enc.input_ids, enc.labels


def test_render_matches_vicuna_v1():
    text = render_phi2(conv("<image>\nWhat is it?", "A cat.", "Is it black?", "Yes"), has_image=True)
    assert text == f"{SYSTEM} USER: <image>\nWhat is it? ASSISTANT: A cat.</s>USER: Is it black? ASSISTANT: Yes</s>"
    assert prompt_phi2("What is it?\n<image>", True) == f"{SYSTEM} USER: <image>\nWhat is it? ASSISTANT:"
    assert prompt_phi2("What is it?", False) == f"{SYSTEM} USER: What is it? ASSISTANT:"


def test_single_turn_with_image(tok):
    got = encoded(tok, {"image": {"path": "x"}, "conversations": conv("<image>\nWhat is it?", "A cat.")})
    assert got == expect(tok, ("mask", SYSTEM_TOKENS + ["ĠUSER", ":", "Ġ", IMG, "Ċ", "What", "Ġis", "Ġit", "?",
                                                       "ĠASSISTANT", ":"]),
                         ("train", ["ĠA", "Ġcat", ".", "</s>"]))


def test_multi_turn(tok):
    got = encoded(tok, {"image": {"path": "x"}, "conversations": conv(
        "<image>\nWhat is it?", "A cat.", "Is it black?", "Yes", "Where is it?", "On a mat.")})
    assert got == expect(
        tok,
        ("mask", SYSTEM_TOKENS + ["ĠUSER", ":", "Ġ", IMG, "Ċ", "What", "Ġis", "Ġit", "?", "ĠASSISTANT", ":"]),
        ("train", ["ĠA", "Ġcat", ".", "</s>"]),
        ("mask", ["USER", ":", "ĠIs", "Ġit", "Ġblack", "?", "ĠASSISTANT", ":"]),  # no "Ġ" after </s>
        ("train", ["ĠYes", "</s>"]),
        ("mask", ["USER", ":", "ĠWhere", "Ġis", "Ġit", "?", "ĠASSISTANT", ":"]),
        ("train", ["ĠOn", "Ġa", "Ġmat", ".", "</s>"]))


def test_text_only(tok):
    got = encoded(tok, {"image": None, "conversations": conv("Hello there", "Hi.", "Is it black?", "No")})
    assert got == expect(tok, ("mask", SYSTEM_TOKENS + ["ĠUSER", ":", "ĠHello", "Ġthere", "ĠASSISTANT", ":"]),
                         ("train", ["ĠHi", ".", "</s>"]),
                         ("mask", ["USER", ":", "ĠIs", "Ġit", "Ġblack", "?", "ĠASSISTANT", ":"]),
                         ("train", ["ĠNo", "</s>"]))


def test_image_at_end_of_prompt_moves_to_front(tok):
    """preprocess_multimodal: `<image>` removed, text stripped, "<image>\\n" prepended."""
    got = encoded(tok, {"image": {"path": "x"}, "conversations": conv("What is it?\n<image>", "A cat.")})
    assert got == expect(tok, ("mask", SYSTEM_TOKENS + ["ĠUSER", ":", "Ġ", IMG, "Ċ", "What", "Ġis", "Ġit", "?",
                                                       "ĠASSISTANT", ":"]),
                         ("train", ["ĠA", "Ġcat", ".", "</s>"]))


def test_plain_stage1(tok):
    """preprocess_plain: the human text is discarded; `<image>` + caption + "\\n", only the image masked."""
    got = encoded(tok, {"image": {"path": "x"}, "conversations": conv("Describe briefly.\n<image>", "a cat on a mat")},
                  "plain")
    assert got == expect(tok, ("mask", [IMG]), ("train", ["a", "Ġcat", "Ġon", "Ġa", "Ġmat", "Ċ"]))


def test_first_turn_from_gpt_is_dropped(tok):
    with_gpt_first = [{"from": "gpt", "value": "Hi."}] + conv("Hello there", "Hi.")
    assert encoded(tok, {"image": None, "conversations": with_gpt_first}) == \
        encoded(tok, {"image": None, "conversations": conv("Hello there", "Hi.")})


def test_tiny_bpe_is_set_up_like_phi2(tmp_path):
    """Byte-level BPE, no BOS, pad = unk = <|endoftext|>, `</s>` added as EOS; a saved copy loads offline."""
    tok = train_tiny_tokenizer(["What is in the image? A cat sits on a mat."] * 10, vocab_size=300)
    assert (tok.pad_token, tok.eos_token, tok.padding_side) == ("<|endoftext|>", "</s>", "right")
    assert tok("Hello").input_ids == tok("Hello", add_special_tokens=False).input_ids  # no BOS
    enc = encode_sample({"image": {"path": "x"}, "conversations": conv("<image>\nWhat is it?", "A cat.")}, tok, "phi2")
    supervised = [t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE_INDEX]
    assert tok.decode(supervised) == " A cat.</s>" and enc.labels[-1] == tok.eos_token_id
    tok.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert again("A cat sits.</s>").input_ids == tok("A cat sits.</s>").input_ids
    assert again.eos_token_id == tok.eos_token_id and again.pad_token_id == tok.pad_token_id
