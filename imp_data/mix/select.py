"""Selection: which normalized samples a mix takes — named drop rules, then a seeded take-N.

The samples past N stay, in the seeded order, as the source's reserve: when rendering or dedup loses some
of the N, the next ones of the same order replace them (imp_data.mix.fill).

Take-N ranks samples by a keyed hash of (seed, source, id) and keeps the N smallest, so the result depends
only on the seed and the set of ids: reordering, splitting or re-concatenating the input files changes
nothing, and growing N keeps every earlier pick (a prefix property that makes audits easy).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import polars as pl

from imp_data.core.errors import ImpDataError
from imp_data.core.recipe import DropRule, MixSource
from imp_data.core.tables import SELECT_COLUMNS


def select_columns(spec: MixSource) -> list[str]:
    """The normalized columns a source's selection reads: SELECT_COLUMNS, plus `meta` when a rule matches
    file positions (read only then: meta can be large, e.g. ALLaVA's captions and URLs)."""
    return SELECT_COLUMNS + ["meta"] if any(r.file_positions is not None for r in spec.drop) else SELECT_COLUMNS


def keyed_rank(seed: int, namespace: str, ids: list[str]) -> list[int]:
    """64-bit keyed hashes of ids: a seeded, order-free pseudo-random rank.

    Example:
        >>> keyed_rank(0, "a", ["x", "y"]) == keyed_rank(0, "a", ["x", "y"])
        True
    """
    key = hashlib.blake2b(f"{seed}:{namespace}".encode(), digest_size=16).digest()
    return [int.from_bytes(hashlib.blake2b(i.encode(), key=key, digest_size=8).digest(), "big") for i in ids]


def rule_mask(frame: pl.DataFrame, rule: DropRule) -> pl.Series:
    """Rows matched by a drop rule (all given conditions must hold)."""
    mask = pl.Series([True] * frame.height, dtype=pl.Boolean)
    if rule.image_prefix is not None:
        mask &= frame["image"].fill_null("").str.starts_with(rule.image_prefix)
    if rule.text_only is not None:
        mask &= frame["image"].is_null() == rule.text_only
    if rule.source_ids is not None:
        mask &= frame["source_id"].is_in(rule.source_ids)
    if rule.file_positions is not None:
        if "meta" not in frame.columns:
            raise ImpDataError(f"drop rule {rule.name!r} matches file positions: read the normalized table with "
                               "imp_data.mix.select.select_columns(spec), which includes `meta`")
        # the position in the published file, not `order` (which counts only the records normalize accepted)
        index = frame["meta"].str.json_path_match("$.file_index").cast(pl.Int64, strict=False)
        mask &= index.is_in(rule.file_positions).fill_null(False)
    return mask


@dataclass
class Selection:
    """One source's selection: the rows taken and the ids dropped per rule (for stats and rejects)."""

    source: str
    available: int  # normalized samples before any rule
    taken: pl.DataFrame
    dropped: dict[str, pl.DataFrame] = field(default_factory=dict)  # rule -> rows (id, source, source_id)
    target: int | str = "all"
    reserve: pl.DataFrame | None = None  # the not_sampled rows in the seeded order: replacements (mix.fill)

    @property
    def dropped_counts(self) -> dict[str, int]:
        return {rule: frame.height for rule, frame in self.dropped.items()}


def select_source(frame: pl.DataFrame, source: str, spec: MixSource, seed: int) -> Selection:
    """Apply a mix's drop rules in order (first match names the rule), then take-N by keyed rank."""
    frame = frame.select([c for c in select_columns(spec) if c in frame.columns])
    sel = Selection(source=source, available=frame.height, taken=frame, target=spec.take)
    rest = frame
    for rule in spec.drop:
        mask = rule_mask(rest, rule)
        sel.dropped[rule.name] = rest.filter(mask).select("id", "source", "source_id")
        rest = rest.filter(~mask)
    rest = rest.select([c for c in SELECT_COLUMNS if c in rest.columns])  # meta served the rules only
    if spec.take != "all" and rest.height > spec.take:
        ranked = rest.with_columns(pl.Series("_rank", keyed_rank(seed, source, rest["id"].to_list()), pl.UInt64))
        ranked = ranked.sort(["_rank", "id"])
        sel.dropped["not_sampled"] = ranked.slice(spec.take).select("id", "source", "source_id")
        sel.reserve = ranked.slice(spec.take).drop("_rank")
        rest = ranked.head(spec.take).drop("_rank")
    sel.taken = rest.sort("order")
    return sel


def reconciliation_rows(ctx, counts: dict) -> list[dict]:
    """Per mix and source: read = rejected + normalized, and normalized = dropped by rule + available."""
    rows = []
    for mix, spec in ctx.recipe.mixes.items():
        for source, share in spec.sources.items():
            if source not in counts:
                continue
            c = counts[source]
            frame = pl.read_parquet(ctx.layout.normalized(source), columns=select_columns(share))
            sel = select_source(frame, source, share, ctx.recipe.seed)
            rows.append({"mix": mix, "source": source, "read": c.read, "rejected": sum(c.rejected.values()),
                         "normalized": c.normalized, "dropped": sel.dropped_counts, "available": sel.taken.height,
                         "balanced": c.read == c.normalized + sum(c.rejected.values())
                         and c.normalized == sel.taken.height + sum(sel.dropped_counts.values())})
    return rows
