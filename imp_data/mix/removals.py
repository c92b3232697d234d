"""Dedup and decontamination policy applied to a mix: which selected samples are removed, and why.

Reads the recipe's `dedup` / `decontaminate` specs, feeds the rendered hashes to the hash index
(`imp_data.mix.hashindex`, policy in `imp_data.mix.dedup`) and returns one removal table in the shape of the mix
rejects table (id, source, source_id, stage, reason, detail, kept_id, distance). Both off -> an empty table.
"""

from __future__ import annotations

import polars as pl

from imp_data.core.tables import DROP_COLUMNS


def empty_removals() -> pl.DataFrame:
    return pl.DataFrame(schema=DROP_COLUMNS)


def find_removals(ctx, mix: str, selected: pl.DataFrame, renders: pl.DataFrame) -> pl.DataFrame:
    """The removal table for `mix` (see module docstring)."""
    spec = ctx.recipe.mixes[mix]
    if spec.dedup.mode == "off" and not spec.decontaminate.benchmarks:
        return empty_removals()
    from imp_data.mix.dedup_policy import removals_for_mix

    return removals_for_mix(ctx, mix, selected, renders)
