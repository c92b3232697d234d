"""LoRA for stage 2, kept to one small module: Imp's targets are every nn.Linear of the LLM, lm_head
included (TRAINING §4: LLaVA drops lm_head, Imp does not); the vision tower and projector are not
adapted (the projector is trained in full)."""

from __future__ import annotations

from torch import nn


def linear_names(llm: nn.Module, include_lm_head: bool = True) -> list[str]:
    names = {name.rsplit(".", 1)[-1] for name, module in llm.named_modules() if isinstance(module, nn.Linear)}
    if not include_lm_head:
        names.discard("lm_head")
    return sorted(names)


def add_lora(model: nn.Module, cfg) -> None:
    """Wrap `model.llm` with peft LoRA adapters (in place)."""
    from peft import LoraConfig, get_peft_model

    targets = linear_names(model.llm, cfg.include_lm_head)
    config = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                        bias="none", task_type="CAUSAL_LM")
    model.llm = get_peft_model(model.llm, config)
