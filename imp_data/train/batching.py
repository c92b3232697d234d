"""From decoded shard samples to model batches: `make_encode` (tokenise + mask, length policy) and
`make_collate` (right-pad ids with pad, labels with -100; stack images in sample order)."""

from __future__ import annotations

import torch

from imp_data.train.template import IGNORE_INDEX, IMAGE_TOKEN_INDEX, encode_sample


class Encoder:
    """Callable: raw sample -> {"input_ids", "labels", "pixel_values"} or None (dropped, counted).

    Length counts image features (`num_patches` per `<image>`), as Imp's `model_max_length` does.
    Over-length samples are truncated from the end or dropped (`overlength`); counts are kept per process.
    """

    def __init__(self, tokenizer, template: str, max_len: int, num_patches: int, overlength: str):
        self.tokenizer, self.template, self.max_len = tokenizer, template, max_len
        self.num_patches, self.overlength = num_patches, overlength
        self.dropped = self.truncated = self.mismatched = 0

    def __call__(self, raw: dict) -> dict | None:
        enc = encode_sample(raw["json"], self.tokenizer, self.template)
        self.mismatched += enc.mismatch
        ids, labels = enc.input_ids, enc.labels
        n_images = ids.count(IMAGE_TOKEN_INDEX)
        if n_images and raw["pixel_values"] is None:
            self.dropped += 1
            return None
        extra = n_images * (self.num_patches - 1)
        if len(ids) + extra > self.max_len:
            if self.overlength == "drop":
                self.dropped += 1
                return None
            keep = max(self.max_len - extra, 1)
            ids, labels = ids[:keep], labels[:keep]
            self.truncated += 1
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "pixel_values": raw["pixel_values"] if IMAGE_TOKEN_INDEX in ids else None, "key": raw["key"]}


def make_encode(tokenizer, template: str, max_len: int, num_patches: int, overlength: str = "truncate") -> Encoder:
    return Encoder(tokenizer, template, max_len, num_patches, overlength)


def make_collate(tokenizer):
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
                "pixel_values": torch.stack(images) if images else None, "keys": [it["key"] for it in items]}

    return collate
