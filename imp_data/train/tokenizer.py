"""Tokenizers: a real one from a local path (offline), or a tiny byte-level BPE trained on the spot.

The tiny one is set up like Imp's phi-2 tokenizer (docs/training.md §3.2): GPT-2-style byte-level BPE without
BOS, `<|endoftext|>` as unk and pad, and `</s>` added as the turn end / EOS token.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from imp_data.train.template import ROLES, SYSTEM

ENDOFTEXT, TURN_END = "<|endoftext|>", "</s>"


def setup_phi2_tokenizer(tokenizer):
    """Imp's phi2 setup: pad = unk = <|endoftext|>, `</s>` added as EOS, right padding."""
    tokenizer.padding_side = "right"
    if tokenizer.unk_token is None:
        tokenizer.add_special_tokens({"unk_token": ENDOFTEXT})
    tokenizer.pad_token = tokenizer.unk_token
    tokenizer.add_special_tokens({"eos_token": TURN_END})
    return tokenizer


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE trained on `texts` (plus the template strings), wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[ENDOFTEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    seed_texts = [SYSTEM, f"{ROLES[0]}: ", f" {ROLES[1]}: ", "Answer the question using a single word or phrase."]
    core.train_from_iterator(list(seed_texts) + list(texts), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token=ENDOFTEXT, model_max_length=4096)
    return setup_phi2_tokenizer(tokenizer)


def load_tokenizer(path: str | Path):
    """A tokenizer saved with `save_pretrained` (or a real model's folder), offline."""
    from transformers import AutoTokenizer

    return setup_phi2_tokenizer(AutoTokenizer.from_pretrained(str(path), local_files_only=True, use_fast=True))
