"""Sequence packing: a micro-batch's samples side by side in one row, with no padding position computed.

Why: Imp's stage-2 samples run from ~750 to 3,072 LLM positions (729 image features + text), so padding
every row of a batch to its longest computes a large share of positions for nothing (`bench/padding.py`
measures it). Packing concatenates the spliced rows of a micro-batch into ONE row and keeps each sample's
attention to itself:

- position ids restart at 0 for every sample, so the rotary embeddings are those of the unpacked row;
- attention is block-diagonal and causal: `packed_attention` runs SDPA (`is_causal`, no mask, so the
  fused kernels apply) once per sample segment instead of once over the whole row;
- labels are the samples' own; the first position of each sample is written as -100, because in the
  packed row it would be the target of the previous sample's last token (unpacked, a row's first label is
  never a target either, as the loss shifts by one).

So the loss (mean over the same supervised tokens) and its gradients are the unpacked ones, up to float
summation order; the batches, their order, the DDP split and resuming are the loader's and do not change.
Dropout draws its masks over a different tensor layout, so a run with dropout is equal in distribution,
not bit for bit. No flash-attn package is needed: on a GPU, SDPA dispatches each causal, unmasked segment to
its own flash kernel, so attention costs sum(n_i^2), not T^2 as a block mask over the whole row would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imp_data.train.template import IGNORE_INDEX

ATTN_NAME = "imp_packed"  # registered with transformers' AttentionInterface by `enable_packed_attention`
_FALLBACK = "sdpa"  # what unpacked calls (generation, padded batches) go through once packing is enabled


def pack_rows(rows: list[torch.Tensor], row_labels: list[torch.Tensor] | None) -> dict:
    """Spliced rows ([n_i, H] each) -> the LLM's kwargs for one packed row.

    Returns: inputs_embeds [1, T, H], attention_mask (ones [1, T]: nothing is padding), position_ids
    [1, T] restarting per sample, labels [1, T] or None, and `segments`, the sample bounds (a tuple of
    ints, passed through the LLM's forward kwargs to `packed_attention`).

    Example:
        >>> out = pack_rows([torch.zeros(2, 1), torch.zeros(3, 1)], [torch.tensor([5, 6]), torch.tensor([7, 8, 9])])
        >>> out["position_ids"].tolist(), out["labels"].tolist(), out["segments"]
        ([[0, 1, 0, 1, 2]], [[-100, 6, -100, 8, 9]], (0, 2, 5))
    """
    lengths = [int(r.shape[0]) for r in rows]
    bounds = [0]
    for n in lengths:
        bounds.append(bounds[-1] + n)
    device = rows[0].device
    out = {"inputs_embeds": torch.cat(rows).unsqueeze(0),
           "attention_mask": torch.ones((1, bounds[-1]), dtype=torch.long, device=device),
           "position_ids": torch.cat([torch.arange(n, device=device) for n in lengths]).unsqueeze(0),
           "segments": tuple(bounds)}
    if row_labels is not None:
        labels = torch.cat(row_labels).clone()
        labels[torch.tensor(bounds[:-1], device=labels.device)] = IGNORE_INDEX  # no target across a boundary
        out["labels"] = labels.unsqueeze(0)
    else:
        out["labels"] = None
    return out


def packed_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     segments: tuple[int, ...] | None = None, **kwargs):
    """transformers attention function: block-diagonal causal attention over `segments` of a packed row.

    query/key/value are [B, heads, T, head_dim] (HF's layout); returns ([B, T, heads, head_dim], None) as
    HF's own functions do. Without `segments` (an unpacked call) it is transformers' SDPA path.
    """
    if segments is None:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        return ALL_ATTENTION_FUNCTIONS[_FALLBACK](module, query, key, value, attention_mask, dropout=dropout,
                                                  scaling=scaling, **kwargs)
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    parts = [F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True,
                                            dropout_p=dropout, scale=scaling)
             for a, b in zip(segments[:-1], segments[1:])]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def enable_packed_attention(llm) -> None:
    """Route `llm`'s attention through `packed_attention` (idempotent; a peft model is handled).

    Unpacked calls keep working (they go to SDPA, with the usual padding mask), so this is switched on once
    and left on: a gradient-checkpointed layer recomputes its forward during backward, after the call.
    """
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    except ImportError as err:  # transformers < 4.53
        raise RuntimeError(f"sequence packing needs transformers >= 4.53 (attention/mask interfaces): {err}; "
                           "set train.packing: false") from None
    if ATTN_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTN_NAME, packed_attention)
        AttentionMaskInterface.register(ATTN_NAME, ALL_MASK_ATTENTION_FUNCTIONS[_FALLBACK])
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    if base.config._attn_implementation != ATTN_NAME:
        base.config._attn_implementation = ATTN_NAME


def row_positions(batch: dict, num_patches: int) -> torch.Tensor:
    """LLM positions of each row of a collated batch: its text tokens + (num_patches - 1) per `<image>`."""
    from imp_data.train.template import IMAGE_TOKEN_INDEX

    mask = batch["attention_mask"].bool()
    images = ((batch["input_ids"] == IMAGE_TOKEN_INDEX) & mask).sum(1)
    return mask.sum(1) + images * (num_patches - 1)


def position_counts(batch: dict, num_patches: int, packed: bool) -> tuple[int, int, float]:
    """(real positions, computed positions, attention length per real token) of one micro-batch.

    Computed is the real count when packed, rows x longest row when padded. The attention length is
    sum(n^2) / sum(n): what each real token attends over on average, for `step_flops`.

    Example:
        >>> b = {"input_ids": torch.tensor([[-200, 1, 2], [3, 0, 0]]),
        ...      "attention_mask": torch.tensor([[1, 1, 1], [1, 0, 0]])}
        >>> position_counts(b, 4, packed=False), position_counts(b, 4, packed=True)
        ((7, 12, 5.285714285714286), (7, 7, 5.285714285714286))
    """
    lengths = row_positions(batch, num_patches).tolist()
    real = sum(lengths)
    computed = real if packed else len(lengths) * max(lengths)
    return real, computed, sum(n * n for n in lengths) / max(real, 1)
