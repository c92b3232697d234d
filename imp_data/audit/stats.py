"""Mix statistics: what went in, what was dropped and why, per source — and the proof that it adds up.

For every source, `read = rejected at normalize + dropped by each rule + rejected at render + taken`
must hold exactly; `compute_stats` raises if it does not, so a silent loss cannot reach a report.
Distributions (turns, text length, original image size and aspect) come from the shard index.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from imp_data.core.errors import ImpDataError
from imp_data.core.io import write_json_atomic
from imp_data.core.layout import MixDir
from imp_data.fetch.downloads_table import summarize_downloads as summarize
from imp_data.normalize import read_counts

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
ASPECT_BINS = [0.0, 0.25, 0.5, 0.75, 0.9, 1.1, 1.34, 2.0, 4.0, float("inf")]


def _grouped(frame: pl.DataFrame, source: str) -> dict[str, int]:
    rows = frame.filter(pl.col("source") == source).group_by("reason").len().sort("reason").rows()
    return {reason: int(n) for reason, n in rows}


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    return {f"p{int(q * 100)}": round(float(np.quantile(values, q)), 3) for q in QUANTILES}


def _histogram(values: np.ndarray, edges: list[float]) -> list[dict]:
    counts, _ = np.histogram(values, bins=np.array(edges, dtype=float))
    return [{"lo": lo, "hi": (None if np.isinf(hi) else hi), "count": int(c)}
            for lo, hi, c in zip(edges[:-1], edges[1:], counts)]


def distributions(index: pl.DataFrame) -> dict:
    """Turns, text length, original image size and aspect of the written samples."""
    turns = Counter(index["n_turns"].to_list()) if index.height else Counter()
    chars = index["text_chars"].to_numpy() if index.height else np.array([])
    imgs = index.filter(pl.col("orig_width").is_not_null())
    w = imgs["orig_width"].to_numpy().astype(float)
    h = imgs["orig_height"].to_numpy().astype(float)
    aspect = w / np.maximum(h, 1) if imgs.height else np.array([])
    char_edges = [0, 50, 100, 200, 500, 1000, 2000, 5000, 10000, float("inf")]
    return {
        "turns": {str(k): int(v) for k, v in sorted(turns.items())},
        "text_chars": {"quantiles": _quantiles(chars), "histogram": _histogram(chars, char_edges)},
        "orig_width": _quantiles(w),
        "orig_height": _quantiles(h),
        "aspect": {"quantiles": _quantiles(aspect), "histogram": _histogram(aspect, ASPECT_BINS)},
        "with_image": int(imgs.height),
        "text_only": int(index.height - imgs.height),
    }


def compute_stats(ctx, mix: str) -> dict:
    """Per-source accounting and distributions for a built mix; raises if any source does not balance."""
    layout = ctx.layout
    spec = ctx.recipe.mixes[mix]
    index = pl.read_parquet(layout.index(mix))
    from imp_data.mix.fill import activated, unsampled_drops

    drops = unsampled_drops(layout, mix)
    removals = pl.read_parquet(layout.removals(mix))
    selected = activated(layout, mix, ["id", "source"])
    renders = pl.read_parquet(layout.renders(mix)).filter(pl.col("reason").is_not_null()).join(selected, on="id")
    per_source, problems = {}, []
    for source, share in spec.sources.items():
        counts = read_counts(layout.normalized(source))
        dropped = dict(_grouped(drops, source))
        for reason, n in _grouped(removals, source).items():  # a reason in both tables adds up
            dropped[reason] = dropped.get(reason, 0) + n
        rejected = dict(counts.rejected)
        for reason, n in _grouped(renders, source).items():
            rejected[reason] = rejected.get(reason, 0) + n
        taken = index.filter(pl.col("source") == source).height
        downloads = ctx.layout.raw(source) / "downloads.parquet"
        entry = {
            "downloads": summarize(downloads) if downloads.is_file() else None,
            "target": share.take, "read": counts.read, "available": counts.normalized,
            "repeated_ids": counts.repeated_ids, "dropped": dropped, "rejected": rejected, "taken": taken,
            "shortfall": (max(0, share.take - taken) if share.take != "all" else 0),
            "location": ctx.recipe.sources[source].location, "adapter": ctx.recipe.sources[source].adapter,
        }
        total = sum(dropped.values()) + sum(rejected.values()) + taken
        if total != counts.read:
            problems.append(f"{source}: read {counts.read} != dropped + rejected + taken = {total}")
        per_source[source] = entry
    if problems:
        raise ImpDataError(f"mix {mix!r} does not reconcile: " + "; ".join(problems))
    totals = {
        "read": sum(e["read"] for e in per_source.values()),
        "dropped": sum(sum(e["dropped"].values()) for e in per_source.values()),
        "rejected": sum(sum(e["rejected"].values()) for e in per_source.values()),
        "taken": index.height,
        "shards": int(index["shard"].n_unique()) if index.height else 0,
        "shard_bytes": int(index.unique("shard")["shard_size"].sum()) if index.height else 0,
    }
    normalized_total = sum(e["available"] for e in per_source.values())
    rejected_after_read = totals["rejected"]
    totals["reject_rate"] = round(rejected_after_read / totals["read"], 6) if totals["read"] else 0.0
    render = ctx.recipe.mix_render(mix)
    contamination = contamination_summary(layout.mix(mix), index)
    return {
        "contamination": contamination,
        "mix": mix, "recipe": ctx.recipe.name, "stage": spec.stage, "seed": ctx.recipe.seed,
        "render": render.model_dump(mode="json"), "shard_size": ctx.recipe.mix_shard_size(mix),
        "sources": per_source, "totals": totals, "normalized_total": normalized_total,
        "max_reject_rate": ctx.recipe.mix_max_reject_rate(mix), "balanced": True,
        "distributions": distributions(index),
        "built_by": built_by(ctx.recipe, mix),
    }


def built_by(recipe, mix: str) -> dict:
    """Per stage, the code version + digest of the recipe fields it read (imp_data.stage_inputs): what
    `imp-data validate` compares with the running code and a recipe to call a mix stale."""
    from imp_data.core.stages import BUILT_BY_STAGES
    from imp_data.stage_inputs import code_version

    stages = {f"normalize/{s}": code_version(recipe, "normalize", s) for s in recipe.mixes[mix].sources}
    for stage in BUILT_BY_STAGES:
        stages[stage] = code_version(recipe, stage, mix)
    return stages


def contamination_summary(mix_dir: Path, index: pl.DataFrame) -> dict | None:
    """Per benchmark: training samples that matched it, how many were dropped, how many remain in shards."""
    path = MixDir(Path(mix_dir)).contamination
    if not path.is_file():
        return None
    found = pl.read_parquet(path)
    in_shards = set(index["id"].to_list())
    out = {}
    for bench in sorted(set(found["benchmark"].to_list())):
        ids = set(found.filter(pl.col("benchmark") == bench)["id"].to_list())
        remaining = len(ids & in_shards)
        out[bench] = {"found": len(ids), "remaining": remaining, "dropped": len(ids) - remaining,
                      "exact": int(found.filter((pl.col("benchmark") == bench) & (pl.col("match") == "exact")).height)}
    return {"benchmarks": out, "remaining": sum(v["remaining"] for v in out.values())}


def write_stats(ctx, mix: str) -> dict:
    stats = compute_stats(ctx, mix)
    write_json_atomic(ctx.layout.stats(mix), stats)
    return stats


def load_stats(mix_dir: Path) -> dict:
    path = MixDir(Path(mix_dir)).stats
    if not path.is_file():
        raise ImpDataError(f"{path}: no stats — build the mix first (imp-data build RECIPE)")
    return json.loads(path.read_text())
