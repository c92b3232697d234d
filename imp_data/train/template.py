"""Conversation templates, tokenisation around `<image>`, and label masking — exactly as Imp does it.

`phi2` (= LLaVA's vicuna_v1 text with `</s>` as the turn end) renders
`SYSTEM USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>`; `plain` (stage 1) renders
`<image>caption\\n`. Text is split on `<image>` and each chunk tokenised separately with IMAGE_TOKEN_INDEX
(-200) between (docs/training.md §2), and labels follow `preprocess_phi2` / `preprocess_plain`
(docs/training.md §3.3): only the assistant answers and their `</s>` are supervised. The one subtle line:
the instruction length is `len(tok(parts[0])) - 1`, because the space after "ASSISTANT:" merges into the
answer's first token.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_TOKEN = "<image>"
IMAGE_TOKEN_INDEX = -200
IGNORE_INDEX = -100
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
ROLES = ("USER", "ASSISTANT")
SEP, SEP2 = " ", "</s>"
TEMPLATES = ("phi2", "plain")


def tokenizer_image_token(text: str, tokenizer) -> list[int]:
    """Tokenise chunks between `<image>` separately, joined by IMAGE_TOKEN_INDEX (LLaVA's function)."""
    chunks = [tokenizer(chunk, add_special_tokens=False).input_ids for chunk in text.split(IMAGE_TOKEN)]
    ids: list[int] = []
    for i, chunk in enumerate(chunks):
        if i:
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(chunk)
    return ids


def _tok(text: str, tokenizer, has_image: bool) -> list[int]:
    return tokenizer_image_token(text, tokenizer) if has_image else tokenizer(text, add_special_tokens=False).input_ids


def normalise_first_turn(value: str) -> str:
    """preprocess_multimodal: `<image>` moved to the front of the first turn, followed by a newline."""
    return IMAGE_TOKEN + "\n" + value.replace(IMAGE_TOKEN, "").strip()


def render_phi2(turns: list[dict], has_image: bool) -> str:
    """The phi2 / vicuna_v1 conversation string (docs/training.md §3.1)."""
    if turns and turns[0]["from"] != "human":
        turns = turns[1:]  # LLaVA drops a first turn that is not from the human
    text = SYSTEM + SEP
    for i, turn in enumerate(turns):
        value = turn["value"]
        if i == 0 and has_image:
            value = normalise_first_turn(value)
        role = ROLES[i % 2]
        text += f"{role}: {value}" + (SEP if i % 2 == 0 else SEP2)
    return text


def prompt_phi2(question: str, has_image: bool) -> str:
    """The generation prompt for one user turn (ends with "ASSISTANT:", no trailing space)."""
    if has_image:
        question = normalise_first_turn(question)
    return f"{SYSTEM}{SEP}{ROLES[0]}: {question}{SEP}{ROLES[1]}:"


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    mismatch: bool = False


def encode_phi2(turns: list[dict], tokenizer, has_image: bool) -> Encoded:
    """Token ids and labels of a conversation, masked as Imp's preprocess_phi2."""
    conversation = render_phi2(turns, has_image)
    ids = _tok(conversation, tokenizer, has_image)
    labels = list(ids)
    cur = 0
    sep = SEP + ROLES[1] + ": "
    for rnd in conversation.split(SEP2):
        if rnd == "":
            break
        parts = rnd.split(sep)
        if len(parts) != 2:
            break
        parts[0] += sep
        round_len = len(_tok(rnd, tokenizer, has_image)) + 1  # + the removed </s>
        instruction_len = len(_tok(parts[0], tokenizer, has_image)) - 1  # trailing space merges into the answer
        labels[cur: cur + instruction_len] = [IGNORE_INDEX] * instruction_len
        cur += round_len
    labels[cur:] = [IGNORE_INDEX] * (len(labels) - cur)
    if cur != len(ids):  # Imp masks the whole sample ("tokenization mismatch")
        return Encoded(ids, [IGNORE_INDEX] * len(ids), mismatch=True)
    return Encoded(ids, labels)


def encode_plain(turns: list[dict], tokenizer) -> Encoded:
    """Stage 1: `<image>` + caption + "\\n"; the human text is discarded, only `<image>` is masked."""
    caption = turns[1]["value"] if len(turns) >= 2 else ""
    ids = tokenizer_image_token(IMAGE_TOKEN + caption + "\n", tokenizer)
    labels = list(ids)
    labels[0] = IGNORE_INDEX
    return Encoded(ids, labels)


def encode_sample(record: dict, tokenizer, template: str) -> Encoded:
    """A shard record (`KEY.json`) -> token ids and labels for `template`."""
    has_image = record.get("image") is not None
    turns = record["conversations"]
    if template == "plain":
        return encode_plain(turns, tokenizer)
    if template == "phi2":
        return encode_phi2(turns, tokenizer, has_image)
    raise ValueError(f"unknown template {template!r}; valid: {', '.join(TEMPLATES)}")
