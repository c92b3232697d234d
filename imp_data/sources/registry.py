"""The adapter registry: adapter name -> adapter instance; an unknown name lists the valid ones."""

from __future__ import annotations

from imp_data.sources.ai2d import AI2DAdapter
from imp_data.sources.allava import ALLaVAAdapter
from imp_data.sources.base import Adapter, Candidate, Problem, Record
from imp_data.sources.chartqa import ChartQAAdapter
from imp_data.sources.docvqa import DocVQAAdapter
from imp_data.sources.dvqa import DVQAAdapter
from imp_data.sources.infographicvqa import InfographicVQAAdapter
from imp_data.sources.laion_gpt4v import LaionGPT4VAdapter
from imp_data.sources.llava_665k import LLaVA665KAdapter
from imp_data.sources.llava_pretrain import LLaVAPretrainAdapter
from imp_data.sources.sharegpt4v import ShareGPT4VAdapter

ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in (
        LLaVA665KAdapter(),
        LLaVAPretrainAdapter(),
        DVQAAdapter(),
        ChartQAAdapter(),
        DocVQAAdapter(),
        AI2DAdapter(),
        InfographicVQAAdapter(),
        ShareGPT4VAdapter(),
        LaionGPT4VAdapter(),
        ALLaVAAdapter(),
    )
}


def get_adapter(name: str) -> Adapter:
    """The adapter registered under `name`; an unknown name lists the valid ones."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ValueError(f"unknown source adapter {name!r}; valid adapters: {', '.join(sorted(ADAPTERS))}") from None


__all__ = ["ADAPTERS", "Adapter", "Candidate", "Problem", "Record", "get_adapter"]
