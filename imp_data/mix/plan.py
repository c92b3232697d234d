"""The plan: every sample of a mix in its final shuffled order, with its key and shard number.

The shuffle sorts by a keyed hash of (seed, mix, id), so the order is a pure function of the recipe and
the set of kept ids. Keys are zero-padded positions — tar member names never come from untrusted ids.
"""

from __future__ import annotations

import polars as pl

from imp_data.mix.select import keyed_rank

KEY_DIGITS = 9


def plan_mix(kept: pl.DataFrame, *, mix: str, seed: int, shard_size: int) -> pl.DataFrame:
    """Order `kept` (needs an `id` column) by a seeded keyed hash and assign position, key and shard."""
    if kept.height >= 10**KEY_DIGITS:
        raise ValueError(f"mix {mix!r} has {kept.height} samples; keys have only {KEY_DIGITS} digits")
    ranked = kept.with_columns(pl.Series("_rank", keyed_rank(seed, f"shuffle:{mix}", kept["id"].to_list()), pl.UInt64))
    ranked = ranked.sort(["_rank", "id"]).drop("_rank")
    positions = pl.int_range(0, ranked.height, dtype=pl.Int64, eager=True)
    return ranked.with_columns(
        positions.alias("position"),
        positions.cast(pl.String).str.zfill(KEY_DIGITS).alias("key"),
        (positions // shard_size).cast(pl.Int32).alias("shard"),
    )


def shard_count(plan: pl.DataFrame) -> int:
    return 0 if plan.height == 0 else int(plan["shard"].max()) + 1
