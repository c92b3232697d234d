"""The LLaVA-style model: SigLIP vision tower -> 2-layer MLP projector -> any Hugging Face causal LM.

Vision features are Imp's: the penultimate layer WITHOUT the post-LayerNorm, all patch tokens (729 at
384 px) — done as Imp does, by deleting the last encoder layer and replacing post-LN and the pooling
head with identities (docs/training.md §2). Image features replace the `<image>` placeholder (-200) in the
token sequence; their label positions are ignored. Real weights load from local paths only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from imp_data.train.template import IGNORE_INDEX, IMAGE_TOKEN_INDEX


@dataclass
class ModelSpec:
    """Where the parts come from: local paths (real) or tiny configs (random init, tests and CPU demo)."""

    vision: str | dict  # path to a SigLIP checkpoint, or SiglipVisionConfig kwargs
    llm: str | dict  # path to a causal LM, or PhiConfig kwargs
    vocab_size: int | None = None  # tiny LLM: the tokenizer's size


def build_projector(vision_dim: int, llm_dim: int) -> nn.Sequential:
    """`mlp2x_gelu`: Linear -> GELU -> Linear."""
    return nn.Sequential(nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim))


def build_vision_tower(spec: str | dict) -> nn.Module:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    if isinstance(spec, dict):
        tower = SiglipVisionModel(SiglipVisionConfig(**spec))
    else:
        tower = SiglipVisionModel.from_pretrained(spec, local_files_only=True)
    vm = getattr(tower, "vision_model", tower)  # transformers < 5 nests the parts one level down
    del vm.encoder.layers[-1]  # select_layer -2: the penultimate layer's output ...
    vm.post_layernorm = nn.Identity()  # ... without the post-LayerNorm
    if hasattr(vm, "head"):
        vm.head = nn.Identity()
    tower.requires_grad_(False)
    return tower.eval()


def build_llm(spec: str | dict, vocab_size: int | None) -> nn.Module:
    from transformers import AutoModelForCausalLM, PhiConfig, PhiForCausalLM

    if isinstance(spec, dict):
        return PhiForCausalLM(PhiConfig(**{"vocab_size": vocab_size, **spec}))
    return AutoModelForCausalLM.from_pretrained(spec, local_files_only=True)


class ImpModel(nn.Module):
    """Vision tower (frozen) + projector + LLM, with image features spliced in place of `<image>`."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.vision_tower = build_vision_tower(spec.vision)
        self.llm = build_llm(spec.llm, spec.vocab_size)
        vcfg = self.vision_tower.config
        self.image_size = vcfg.image_size
        self.num_patches = (vcfg.image_size // vcfg.patch_size) ** 2
        self.mm_projector = build_projector(vcfg.hidden_size, self.llm.config.hidden_size)

    def train(self, mode: bool = True):
        super().train(mode)
        self.vision_tower.eval()  # frozen: no dropout, whatever the mode
        return self

    @torch.no_grad()
    def _vision(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.shape[-1] != self.image_size:
            raise ValueError(f"images are {pixel_values.shape[-1]} px but the vision tower expects "
                             f"{self.image_size} px: render the mix at that resolution")
        dtype = next(self.vision_tower.parameters()).dtype
        if pixel_values.dtype == torch.uint8:  # the loader's images, normalised here, on the model's device
            from imp_data.train.pixels import normalize_pixels

            pixel_values = normalize_pixels(pixel_values, dtype)
        return self.vision_tower(pixel_values=pixel_values.to(dtype)).last_hidden_state

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self._vision(pixel_values)
        return self.mm_projector(features.to(self.mm_projector[0].weight.dtype))

    def splice(self, input_ids: torch.Tensor, labels: torch.Tensor | None, attention_mask: torch.Tensor,
               pixel_values: torch.Tensor | None) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Each row's embedded sequence with its images' projected features in place of `<image>`.

        Follows `prepare_inputs_labels_for_multimodal`: strip padding, split each row at -200, embed the
        text pieces, put one image's features (labels -100) at each -200.

        Returns:
            (rows [n_b, H] per row, their labels [n_b] per row or None)
        """
        embed_tokens = self.llm.get_input_embeddings()
        features = self.encode_images(pixel_values) if pixel_values is not None and len(pixel_values) else None
        rows, row_labels = [], []
        image_i = 0
        for b in range(input_ids.shape[0]):
            keep = attention_mask[b].bool()
            ids = input_ids[b][keep]
            lab = labels[b][keep] if labels is not None else None
            pieces, piece_labels, start = [], [], 0
            for pos in (ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist() + [len(ids)]:
                pieces.append(embed_tokens(ids[start:pos]))
                if lab is not None:
                    piece_labels.append(lab[start:pos])
                if pos < len(ids):
                    if features is None or image_i >= len(features):
                        raise ValueError(f"row {b} has more <image> tokens than the batch has images")
                    pieces.append(features[image_i].to(pieces[0].dtype))
                    if lab is not None:
                        piece_labels.append(lab.new_full((features.shape[1],), IGNORE_INDEX))
                    image_i += 1
                start = pos + 1
            rows.append(torch.cat(pieces))
            if lab is not None:
                row_labels.append(torch.cat(piece_labels))
        if features is not None and image_i != len(features):
            raise ValueError(f"the batch has {len(features)} images but {image_i} <image> tokens")
        if features is None and self.training:
            # a text-only batch still touches the projector (as LLaVA's zero image does), so DDP sees a
            # gradient — of zero — for every trainable parameter on every rank
            rows[0] = rows[0] + 0.0 * self.mm_projector(rows[0].new_zeros(1, self.mm_projector[0].in_features)).sum()
        return rows, (row_labels if labels is not None else None)

    def embed(self, input_ids: torch.Tensor, labels: torch.Tensor | None, attention_mask: torch.Tensor,
              pixel_values: torch.Tensor | None, padding_side: str = "right"):
        """`splice`, then pad the rows again — on the right for training, on the left for generation (a
        decoder continues from the last position).

        Returns:
            (inputs_embeds [B, T, H], attention_mask [B, T], labels [B, T] or None)
        """
        rows, row_labels = self.splice(input_ids, labels, attention_mask, pixel_values)
        width = max(r.shape[0] for r in rows)
        embeds = rows[0].new_zeros((len(rows), width, rows[0].shape[1]))
        mask = torch.zeros((len(rows), width), dtype=torch.long, device=embeds.device)
        out_labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long, device=embeds.device)
        for b, r in enumerate(rows):
            span = slice(0, r.shape[0]) if padding_side == "right" else slice(width - r.shape[0], width)
            embeds[b, span], mask[b, span] = r, 1
            if labels is not None:
                out_labels[b, span] = row_labels[b]
        return embeds, mask, (out_labels if labels is not None else None)

    def forward(self, input_ids, attention_mask, labels=None, pixel_values=None, packed: bool = False):
        """The LLM's output (loss when `labels`); `packed` puts the batch's samples in one row with
        block-diagonal attention and no padding (`imp_data.train.packing`): same loss, fewer positions."""
        if packed:
            from imp_data.train.packing import enable_packed_attention, pack_rows

            enable_packed_attention(self.llm)
            return self.llm(**pack_rows(*self.splice(input_ids, labels, attention_mask, pixel_values)))
        embeds, mask, labels = self.embed(input_ids, labels, attention_mask, pixel_values)
        return self.llm(inputs_embeds=embeds, attention_mask=mask, labels=labels)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, pixel_values=None, *, max_new_tokens: int = 16,
                 eos_token_id: int | None = None, pad_token_id: int | None = None) -> torch.Tensor:
        """Greedy decoding (the eval job's setting: temperature 0); returns only the new token ids."""
        embeds, mask, _ = self.embed(input_ids, None, attention_mask, pixel_values, padding_side="left")
        return self.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, num_beams=1, eos_token_id=eos_token_id,
                                 pad_token_id=pad_token_id if pad_token_id is not None else eos_token_id)
