"""From decoded shard samples to model batches: `make_encode` (tokenise + mask + length policy) and
`make_collate` (right-pad ids with pad and labels with -100, stack the images in sample order).

Both run inside the loader's worker processes, so nothing is counted on the encoder object: each item
carries its own flags (`truncated`, `mismatch`) and `collate` sums them into the batch's `stats`, which the
loop adds up; dropped samples (`encode` returned None) are counted by the loader as `skipped`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from imp_data.train.template import IGNORE_INDEX, IMAGE_TOKEN_INDEX, encode_sample

OVERLENGTH = ("truncate", "drop")


class Encoder:
    """Callable: raw loader sample -> {"input_ids", "labels", "pixel_values", ...} or None (dropped).

    The length counted is the LLM's: every `<image>` stands for `num_patches` features, as in Imp's
    `model_max_length` (docs/training.md §3.3). Over-length samples are truncated from the end or dropped.
    """

    def __init__(self, tokenizer, template: str, max_len: int, num_patches: int, overlength: str = "truncate"):
        if overlength not in OVERLENGTH:
            raise ValueError(f"unknown overlength policy {overlength!r}; valid: {', '.join(OVERLENGTH)}")
        self.tokenizer, self.template, self.max_len = tokenizer, template, max_len
        self.num_patches, self.overlength = num_patches, overlength

    def __call__(self, raw: dict) -> dict | None:
        enc = encode_sample(raw["json"], self.tokenizer, self.template)
        ids, labels = enc.input_ids, enc.labels
        n_images = ids.count(IMAGE_TOKEN_INDEX)
        if n_images and raw["pixel_values"] is None:
            return None  # a record that names an image the shard does not hold: nothing to train on
        extra = n_images * (self.num_patches - 1)
        truncated = len(ids) + extra > self.max_len
        if truncated:
            if self.overlength == "drop":
                return None
            keep = max(self.max_len - extra, 1)
            ids, labels = ids[:keep], labels[:keep]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "pixel_values": raw["pixel_values"] if IMAGE_TOKEN_INDEX in ids else None, "key": raw["key"],
                "truncated": truncated, "mismatch": enc.mismatch}


def make_encode(tokenizer, template: str, max_len: int, num_patches: int, overlength: str = "truncate") -> Encoder:
    """The loader's `encode` for a template and length policy (see `Encoder`)."""
    return Encoder(tokenizer, template, max_len, num_patches, overlength)


def make_collate(tokenizer) -> Callable[[list[dict]], dict]:
    """The loader's `collate`: right padding as Imp's collator (`attention_mask` marks real tokens).

    Example:
        >>> class Tok: pad_token_id = 0
        >>> item = lambda n: {"input_ids": torch.arange(1, n + 1), "labels": torch.arange(1, n + 1),
        ...                   "pixel_values": None, "key": str(n), "truncated": False, "mismatch": False}
        >>> batch = make_collate(Tok())([item(2), item(3)])
        >>> batch["input_ids"].tolist(), batch["labels"][0].tolist(), batch["attention_mask"][0].tolist()
        ([[1, 2, 0], [1, 2, 3]], [1, 2, -100], [1, 1, 0])
    """
    pad = tokenizer.pad_token_id

    def collate(items: list[dict]) -> dict:
        width = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), width), pad, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for b, it in enumerate(items):
            n = len(it["input_ids"])
            ids[b, :n], labels[b, :n], mask[b, :n] = it["input_ids"], it["labels"], 1
        images = [it["pixel_values"] for it in items if it["pixel_values"] is not None]
        return {"input_ids": ids, "labels": labels, "attention_mask": mask,
                "pixel_values": torch.stack(images) if images else None, "keys": [it["key"] for it in items],
                "stats": {"truncated": sum(it["truncated"] for it in items),
                          "mismatch": sum(it["mismatch"] for it in items)}}

    return collate
