"""Asset checks. Each runs in the step of the asset it checks (an `AssetCheckSpec` of that step's
`multi_asset`), right after the asset is written, so a check costs no step of its own. All are blocking:
a failing one fails its step (Dagster raises `DagsterAssetCheckFailedError` naming it), the assets after
it in the same step are not built, and downstream steps are skipped. The UI and GraphQL show the failing
check with a one-line description of why and the metadata that proves it (counts, limits, the offending
sources or rows).

Each check is a plain function `(data_root, recipe, subject) -> AssetCheckResult`, so it can be called on
its own (tests do) and reads only what its asset wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import dagster as dg

from imp_data.audit.quality import contamination_left, end_counts, reject_rate, target_report
from imp_data.audit.validate import validate_normalized
from imp_data.core.recipe import Recipe
from imp_data.shards.reader import verify_mix
from pipelines.resources import DataRoot


def _problems(problems: list[str], what: str) -> tuple[dict, str]:
    """(metadata, description) of a check that lists problems."""
    metadata = {"problems": len(problems),
                "first_problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:20]) or "none")}
    return metadata, (f"{len(problems)} {what}; first: {problems[0]}" if problems else f"no {what}")


def _metadata_value(value):
    """A plain Python value as Dagster metadata (None, lists and dicts included)."""
    if value is None:
        return dg.MetadataValue.null()
    if isinstance(value, (list, dict)):
        return dg.MetadataValue.json(value)
    return value


def check_schema_valid(data_root: DataRoot, recipe: Recipe, source: str) -> dg.AssetCheckResult:
    path = data_root.context_pulled(recipe, source=source).layout.normalized(source)
    problems = validate_normalized(path, 20)
    metadata, why = _problems(problems, "schema problem(s)")
    return dg.AssetCheckResult(passed=not problems, metadata=metadata, description=why)


def check_counts_match_targets(data_root: DataRoot, recipe: Recipe, mix: str) -> dg.AssetCheckResult:
    rows = target_report(data_root.context_pulled(recipe, mix), mix)
    table = "| source | target | selected | ok | why |\n|---|---:|---:|---|---|\n" + "\n".join(
        f"| {r['source']} | {r['target']} | {r['selected']} | {'yes' if r['ok'] else 'NO'} | {r['why']} |"
        for r in rows)
    bad = [f"{r['source']} selected {r['selected']} of {r['target']} ({r['why']})" for r in rows if not r["ok"]]
    return dg.AssetCheckResult(passed=not bad, metadata={"per_source": dg.MetadataValue.md(table),
                                                         "failing": dg.MetadataValue.json(bad)},
                               description="; ".join(bad) or "every source met its target or explained it")


def check_reject_rate(data_root: DataRoot, recipe: Recipe, mix: str) -> dg.AssetCheckResult:
    r = reject_rate(data_root.context_pulled(recipe, mix), mix)
    return dg.AssetCheckResult(passed=r["ok"], metadata={
        "reject_rate": r["rate"], "limit": r["limit"], "rejected": r["rejected"], "read": r["read"],
        "per_source": dg.MetadataValue.json(r["per_source"])},
        description=f"reject rate {r['rate']:.2%} ({r['rejected']} of {r['read']}) "
                    f"{'<=' if r['ok'] else 'exceeds'} limit {r['limit']:.2%}")


def check_no_contamination_above_policy(data_root: DataRoot, recipe: Recipe, mix: str) -> dg.AssetCheckResult:
    r = contamination_left(data_root.context_pulled(recipe, mix), mix)
    why = r.get("problem") or (f"{r['left']} of {r['matched']} benchmark-matching samples left in the plan "
                               f"(policy {r['policy']}, limit {r.get('limit')})")
    return dg.AssetCheckResult(passed=r["ok"], metadata={k: _metadata_value(v) for k, v in r.items()},
                               description=why)


def check_index_matches_shards(data_root: DataRoot, recipe: Recipe, mix: str) -> dg.AssetCheckResult:
    problems = verify_mix(data_root.context_pulled(recipe, mix, shards=True).layout.mix(mix))
    metadata, why = _problems(problems, "index/shard mismatch(es)")
    return dg.AssetCheckResult(passed=not problems, metadata=metadata, description=why)


def check_taken_counts_match_targets(data_root: DataRoot, recipe: Recipe, mix: str) -> dg.AssetCheckResult:
    rows = end_counts(data_root.context_pulled(recipe, mix), mix)
    table = ("| source | target | selected | taken | shortfall | ok | why |\n|---|---:|---:|---:|---:|---|---|\n"
             + "\n".join(f"| {r['source']} | {r['target']} | {r['selected']} | {r['taken']} | {r['shortfall']} | "
                         f"{'yes' if r['ok'] else 'NO'} | {r['why']} |" for r in rows))
    bad = [f"{r['source']}: {r['why']}" for r in rows if not r["ok"]]
    short = {r["source"]: r["shortfall"] for r in rows if r["shortfall"]}
    return dg.AssetCheckResult(passed=not bad, metadata={
        "per_source": dg.MetadataValue.md(table), "shortfall": dg.MetadataValue.json(short),
        "failing": dg.MetadataValue.json(bad)},
        description="; ".join(bad) or (f"targets met; explained shortfalls: {short}" if short else "targets met"))


class Check(NamedTuple):
    """One blocking check on an asset: what the UI shows and the function that evaluates it."""

    function: Callable[[DataRoot, Recipe, str], dg.AssetCheckResult]
    description: str

    @property
    def name(self) -> str:
        return self.function.__name__


# per asset (the stage output it checks), in the order they run
CHECKS: dict[str, list[Check]] = {
    "normalized": [Check(check_schema_valid,
                         "Every normalized row validates against the Sample schema; ids are unique")],
    "selection": [Check(check_counts_match_targets,
                        "Each source selected its recipe target, or the shortfall is explained by rejects")],
    "renders": [Check(check_reject_rate,
                      "Rejected records (normalize + render) stay under the recipe's max_reject_rate")],
    "plan": [Check(check_no_contamination_above_policy,
                   "Training samples in plan.parquet that match a benchmark image stay within the "
                   "decontamination policy's limit (0 when it drops)")],
    "index": [Check(check_index_matches_shards,
                    "index.parquet rows equal the tar contents and every checksum matches"),
              Check(check_taken_counts_match_targets,
                    "Per source, the samples in the shards (stats.json `taken`) equal the recipe target, or the "
                    "shortfall is explained by render rejects and dedup/decontamination removals")],
}


def check_specs(key: dg.AssetKey, output: str) -> list[dg.AssetCheckSpec]:
    """The `AssetCheckSpec`s of the asset `key` that writes the stage output `output`."""
    return [dg.AssetCheckSpec(c.name, asset=key, blocking=True, description=c.description)
            for c in CHECKS.get(output, [])]
