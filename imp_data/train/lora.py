"""LoRA for stage 2, kept to one small module: Imp's targets are every nn.Linear of the LLM, lm_head
included (docs/training.md §4: LLaVA drops lm_head, Imp does not); the vision tower and the projector are never
adapted (the projector is trained in full)."""

from __future__ import annotations

import warnings

from torch import nn


def linear_names(llm: nn.Module, include_lm_head: bool = True) -> list[str]:
    """Leaf names of every nn.Linear in the LLM — Imp's `find_all_linear_names` applied to the LLM alone.

    Example:
        >>> from transformers import PhiConfig, PhiForCausalLM
        >>> llm = PhiForCausalLM(PhiConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
        ...                                num_hidden_layers=1, num_attention_heads=2))
        >>> linear_names(llm)
        ['dense', 'fc1', 'fc2', 'k_proj', 'lm_head', 'q_proj', 'v_proj']
    """
    names = {name.rsplit(".", 1)[-1] for name, module in llm.named_modules() if isinstance(module, nn.Linear)}
    if not include_lm_head:
        names.discard("lm_head")
    return sorted(names)


def add_lora(model: nn.Module, cfg) -> None:
    """Wrap `model.llm` in peft LoRA adapters, in place (`cfg`: the run's `LoraConfig`)."""
    from peft import LoraConfig, get_peft_model

    targets = linear_names(model.llm, cfg.include_lm_head)
    config = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                        bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft still asks transformers 5 for a deprecated attribute
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model.llm = get_peft_model(model.llm, config)
