"""Data-quality measures behind the blocking checks (Dagster asset checks and CLI alike).

Thresholds live in the recipe; these functions only measure and explain, so a failed check can say
exactly which source missed what and why.
"""

from __future__ import annotations

import polars as pl

from imp_data.normalize import read_counts


def target_report(ctx, mix: str) -> list[dict]:
    """Per source: target, selected, and whether a shortfall is explained.

    A source meets its target when it selected `take` records; a shortfall is explained when nothing
    eligible was left unsampled (every missing record is a listed reject or drop).
    """
    layout = ctx.layout
    selected = pl.read_parquet(layout.selected(mix), columns=["source"])
    drops = pl.read_parquet(layout.drops(mix), columns=["source", "reason"])
    rows = []
    for source, share in ctx.recipe.mixes[mix].sources.items():
        n = selected.filter(pl.col("source") == source).height
        unsampled = drops.filter((pl.col("source") == source) & (pl.col("reason") == "not_sampled")).height
        met = share.take == "all" or n == share.take
        rows.append({"source": source, "target": share.take, "selected": n, "unsampled": unsampled,
                     "ok": met or unsampled == 0,
                     "why": "met" if met else ("all eligible records taken; the rest are listed rejects/drops"
                                               if unsampled == 0 else "eligible records left unsampled")})
    return rows


def end_counts(ctx, mix: str) -> list[dict]:
    """Per source: target vs taken in stats.json, and what explains a shortfall.

    Every activated sample (the selection plus the replacements the fill loop drew from the reserve) is
    in the shards or was lost at render or to dedup/decontamination, reason by reason; and a source ends
    short of its target only when its reserve ran out (nothing eligible is left unsampled).
    """
    from imp_data.audit.stats import load_stats
    from imp_data.mix.fill import activated, unsampled_drops

    layout = ctx.layout
    stats = load_stats(layout.mix(mix))
    samples = activated(layout, mix, ["id", "source"])
    renders = pl.read_parquet(layout.renders(mix), columns=["id", "reason"]).filter(pl.col("reason").is_not_null())
    removals = pl.read_parquet(layout.removals(mix), columns=["id", "reason"])
    lost = pl.concat([renders, removals]).unique("id", keep="first").join(samples, on="id")
    left = unsampled_drops(layout, mix).filter(pl.col("reason") == "not_sampled")
    rows = []
    for source, share in ctx.recipe.mixes[mix].sources.items():
        target, taken = share.take, stats["sources"][source]["taken"]
        n = samples.filter(pl.col("source") == source).height
        unsampled = left.filter(pl.col("source") == source).height
        reasons = dict(lost.filter(pl.col("source") == source).group_by("reason").len().sort("reason").rows())
        losses = ", ".join(f"{k} {v}" for k, v in reasons.items())
        ok = n - taken == sum(reasons.values()) and (
            target == "all" or taken == target or (taken < target and unsampled == 0))
        if not ok:
            why = (f"UNEXPLAINED: taken {taken}, activated {n}, lost {sum(reasons.values())} "
                   f"({losses or 'none'}), {unsampled} eligible left unsampled")
        elif target == "all" or taken == target:
            why = "target all" if target == "all" else "met"
        else:
            why = "short: every eligible record was tried" + (f"; lost {losses}" if losses else "")
        rows.append({"source": source, "target": target, "selected": n, "taken": taken,
                     "shortfall": 0 if target == "all" else target - taken, "lost": reasons, "ok": ok, "why": why})
    return rows


def reject_rate(ctx, mix: str) -> dict:
    """Rejected records (normalize + render) over records read, for the mix's sources."""
    layout = ctx.layout
    read = rejected = 0
    per_source = {}
    from imp_data.mix.fill import activated

    renders = pl.read_parquet(layout.renders(mix)).filter(pl.col("reason").is_not_null())
    selected = activated(layout, mix, ["id", "source"])
    render_rejects = renders.join(selected, on="id").group_by("source").len()
    render_by_source = dict(render_rejects.rows())
    for source in ctx.sources_of(mix):
        counts = read_counts(layout.normalized(source))
        n = sum(counts.rejected.values()) + render_by_source.get(source, 0)
        per_source[source] = {"read": counts.read, "rejected": n}
        read += counts.read
        rejected += n
    rate = rejected / read if read else 0.0
    limit = ctx.recipe.mix_max_reject_rate(mix)
    return {"rate": rate, "limit": limit, "ok": rate <= limit, "read": read, "rejected": rejected,
            "per_source": per_source}


def contamination_left(ctx, mix: str) -> dict:
    """Benchmark-matching samples that made it into the plan, against the policy's limit.

    Reads what is really in the mix (`plan.parquet`), not what the removal table intended, so a plan built
    from stale removals, or a report-only policy with a limit, fails the check.
    """
    spec = ctx.recipe.mixes[mix].decontaminate
    path = ctx.layout.contamination(mix)
    policy = "drop" if spec.drop else "report only"
    limit = spec.remaining_limit()
    if not spec.benchmarks:
        return {"ok": True, "matched": 0, "left": 0, "limit": limit, "policy": "off", "examples": []}
    if not path.is_file():
        return {"ok": False, "matched": 0, "left": 0, "limit": limit, "policy": policy, "examples": [],
                "problem": f"{path}: missing — the renders stage writes it; rerun it"}
    found = pl.read_parquet(path, columns=["id", "benchmark", "image_name", "distance"])
    planned = pl.read_parquet(ctx.layout.plan(mix), columns=["id"])
    left = found.join(planned, on="id", how="semi").unique("id", keep="first").sort("id")
    examples = [f"{r['id']} ~ {r['benchmark']} {r['image_name']} (distance {r['distance']})"
                for r in left.head(10).to_dicts()]
    return {"ok": limit is None or left.height <= limit, "matched": int(found["id"].n_unique()),
            "left": left.height, "limit": limit, "policy": policy, "examples": examples}
