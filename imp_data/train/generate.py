"""Greedy batched generation for the eval job: prompt + raw image bytes in, answer strings out.

The interface the eval runner codes against is one callable, `generate(items) -> list[str]`, where each
item has `.prompt` (the user's text, with `<image>` where the image goes — anywhere: like training, it is
moved to the front) and `.image_jpeg` (the benchmark image's encoded bytes, any format Pillow reads, or
None for a text-only question); dicts with those keys work too. Images are rendered exactly as the
training mix was (its mode, fill and resolution, recorded in the checkpoint's meta), then normalised as
the loader does. Decoding is docs/eval.md §2.3's: greedy, stop at `</s>`, special tokens skipped, stripped.

The one design choice: batches are padded on the LEFT after the image features are spliced in
(`ImpModel.generate`), so a batch decodes exactly like one item at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from imp_data.images import render_image
from imp_data.train.checkpoint import load_trainable, resolve_checkpoint
from imp_data.train.config import run_from_dict
from imp_data.train.pixels import decode_pixels
from imp_data.train.template import IMAGE_TOKEN, prompt_phi2, tokenizer_image_token


@dataclass
class GenerationItem:
    """One question (any object with these two attributes, or a dict with these keys, will do)."""

    prompt: str
    image_jpeg: bytes | None = None


def _field(item, name: str):
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def build_prompt(question: str, has_image: bool, template: str) -> str:
    """The model's input text for one question: the phi2 generation prompt (ending "ASSISTANT:"), or for a
    stage-1 (plain) model just `<image>` — it was only ever taught to caption."""
    if template == "plain":
        return IMAGE_TOKEN if has_image else ""
    return prompt_phi2(question, has_image)


def make_generate(model, tokenizer, template: str = "phi2", *, max_new_tokens: int = 128, batch_size: int = 8,
                  image_mode: str = "pad", fill: Sequence[int] = (127, 127, 127), resampler: str = "torch",
                  device: torch.device | str | None = None) -> Callable[[Sequence], list[str]]:
    """A function answering a list of items, in order, with greedy decoding.

    Args:
        model: an `ImpModel` (put in eval mode here).
        tokenizer: the run's tokenizer (`</s>` is its EOS).
        template: "phi2" or "plain", as the model was trained.
        max_new_tokens: the answer's cap (LLaVA's loader default 128; docs/eval.md §2.3).
        batch_size: items decoded together.
        image_mode, fill, resampler: how the training mix rendered images (`imp_data.images.render_image`).
        device: where to run (default: where the model is).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id

    def pixels(data: bytes) -> torch.Tensor:
        rendered = render_image(data, resolution=model.image_size, mode=image_mode, fill=tuple(fill),
                                resampler=resampler)
        return decode_pixels(rendered.jpeg)

    def answer_batch(items: Sequence) -> list[str]:
        rows, images = [], []
        for item in items:
            image = _field(item, "image_jpeg")
            prompt = build_prompt(_field(item, "prompt") or "", image is not None, template)
            if image is None and IMAGE_TOKEN in prompt:
                raise ValueError(f"prompt {prompt[:60]!r}... has <image> but the item has no image_jpeg")
            rows.append(tokenizer_image_token(prompt, tokenizer))
            if image is not None:
                images.append(pixels(image))
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, : len(row)], mask[b, : len(row)] = torch.tensor(row, dtype=torch.long), 1
        pixel_values = torch.stack(images).to(device) if images else None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model.generate(ids.to(device), mask.to(device), pixel_values, max_new_tokens=max_new_tokens,
                                 eos_token_id=eos, pad_token_id=pad)
        return [text.strip() for text in tokenizer.batch_decode(out, skip_special_tokens=True)]

    def generate(items: Sequence) -> list[str]:
        answers: list[str] = []
        for start in range(0, len(items), batch_size):
            answers += answer_batch(items[start: start + batch_size])
        return answers

    return generate


def load_generate(checkpoint: str | Path, *, device: torch.device | str | None = None,
                  **kwargs) -> Callable[[Sequence], list[str]]:
    """`make_generate` for a trained run: a checkpoint dir or a run dir (DATA/runs/NAME, its latest).

    The model is rebuilt from the resolved config in the checkpoint's meta and its trained weights loaded;
    template and image rendering follow the run. `kwargs` go to `make_generate`.
    """
    from imp_data.train.loop import build_model  # the loop imports this module's neighbours, not this one
    from imp_data.train.tokenizer import load_tokenizer

    ckpt = resolve_checkpoint(Path(checkpoint))
    meta = json.loads((ckpt / "meta.json").read_text())
    cfg = run_from_dict(meta["config"], str(ckpt / "meta.json"))
    tokenizer = load_tokenizer(ckpt.parent.parent / "tokenizer")
    model = build_model(cfg, tokenizer, init_projector=False)
    load_trainable(model, ckpt)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    render = meta.get("image") or {}
    kwargs = {"image_mode": render.get("mode", "pad"), "fill": render.get("fill", (127, 127, 127)),
              "resampler": render.get("resampler", "torch"), **kwargs}
    return make_generate(model.to(device), tokenizer, cfg.template, device=device, **kwargs)
