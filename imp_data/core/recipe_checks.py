"""The recipe checks a model cannot state: pydantic errors said as YAML paths, and the cross-field rules
(adapter names and options, mix references, rules an adapter cannot honour). `imp_data.core.recipe`
runs them on every load, so a recipe's problems are listed all at once."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from imp_data.core.schema import SOURCE_NAME_RE
from imp_data.core.source_options import ADAPTER_OPTIONS, FILE_INDEX_ADAPTERS


def yaml_path(loc: tuple[Any, ...]) -> str:
    """`mixes.m.sources.dvqa.take`; a key that is not a plain word is quoted: `mixes.'../../x'.stage`."""
    return ".".join(p if isinstance(p, str) and re.fullmatch(r"[\w\[\]'-]+", p) else
                    str(p) if isinstance(p, int) else repr(p) for p in loc) or "<top>"


def problem_line(error: dict) -> str:
    """One pydantic error as `yaml.path: message`; a bad source, mix or benchmark name said as such."""
    loc = error["loc"]
    if len(loc) >= 3 and loc[-1] == "[key]" and loc[-3] in ("sources", "mixes", "benchmarks"):
        kind = {"sources": "source", "mixes": "mix", "benchmarks": "benchmark"}[loc[-3]]
        return f"{yaml_path(loc[:-1])}: {kind} names must match {SOURCE_NAME_RE} (the name becomes a folder name)"
    return f"{yaml_path(loc)}: {error['msg'].removeprefix('Value error, ')}"


def cross_field_problems(raw: dict[str, Any]) -> list[str]:
    """Cross-field checks pydantic cannot see: adapter names, adapter options, mix references."""
    problems: list[str] = []
    sources = raw.get("sources") if isinstance(raw.get("sources"), dict) else {}
    for name, spec in sources.items():
        if name == "benchmarks":  # raw/benchmarks/ holds the decontamination benchmarks' fetched copies
            problems.append("sources.benchmarks: the name is reserved (raw/benchmarks/ holds benchmark images)")
        if not isinstance(spec, dict):
            continue
        adapter = spec.get("adapter")
        if adapter is None:
            continue
        if adapter not in ADAPTER_OPTIONS:
            problems.append(f"sources.{name}.adapter: unknown adapter {adapter!r}; "
                            f"valid: {', '.join(sorted(ADAPTER_OPTIONS))}")
            continue
        options = spec.get("options") or {}
        problems += position_rule_problems(raw, name, adapter)
        try:
            ADAPTER_OPTIONS[adapter].model_validate(options)
        except ValidationError as err:
            for e in err.errors():
                problems.append(f"sources.{name}.options.{yaml_path(e['loc'])}: {e['msg']}")
    mixes = raw.get("mixes") if isinstance(raw.get("mixes"), dict) else {}
    for mix, spec in mixes.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("sources"), dict):
            continue
        for src in spec["sources"]:
            if src not in sources:
                problems.append(f"mixes.{mix}.sources.{src}: not declared under sources (have: {', '.join(sources)})")
        priority = (spec.get("dedup") or {}).get("source_priority") or []
        for src in priority:
            if src not in spec["sources"]:
                problems.append(f"mixes.{mix}.dedup.source_priority: {src!r} is not a source of this mix")
    return problems


def position_rule_problems(raw: dict[str, Any], source: str, adapter: str) -> list[str]:
    """A `file_positions` rule needs the file index in meta: on any other adapter it would match nothing."""
    keeping = [n for n in ADAPTER_OPTIONS if n in FILE_INDEX_ADAPTERS]
    problems = []
    for mix, spec in (raw.get("mixes") if isinstance(raw.get("mixes"), dict) else {}).items():
        shares = spec.get("sources") if isinstance(spec, dict) else None
        share = shares.get(source) if isinstance(shares, dict) else None
        rules = share.get("drop") if isinstance(share, dict) else None
        problems += [f"mixes.{mix}.sources.{source}.drop.{i}.file_positions: adapter {adapter!r} does not keep "
                     f"records' file positions (meta.file_index); these do: {', '.join(keeping)}"
                     for i, rule in enumerate(rules if isinstance(rules, list) else [])
                     if adapter not in keeping and isinstance(rule, dict) and rule.get("file_positions") is not None]
    return problems
