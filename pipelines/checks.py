"""Asset checks. Blocking ones stop downstream assets in the same run when they fail, and the UI and
GraphQL show the failing check with the metadata that says why."""

from __future__ import annotations

import dagster as dg

from imp_data.quality import reject_rate, target_report
from imp_data.recipe import Recipe
from imp_data.shards.reader import verify_mix
from imp_data.validate import validate_normalized
from pipelines.assets import mix_key, normalized_key
from pipelines.resources import DataRoot


def source_checks(recipe: Recipe, source: str) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset=normalized_key(source), name="check_schema_valid", blocking=True,
                    description="Every normalized row validates against the Sample schema; ids are unique")
    def check_schema_valid(data_root: DataRoot) -> dg.AssetCheckResult:
        path = data_root.context(recipe).layout.normalized(source)
        problems = validate_normalized(path, 20)
        return dg.AssetCheckResult(passed=not problems, metadata={
            "problems": len(problems), "first_problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")})

    return [check_schema_valid]


def mix_checks(recipe: Recipe, mix: str) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset=mix_key(mix, "selection"), name="check_counts_match_targets", blocking=True,
                    description="Each source selected its recipe target, or the shortfall is explained by rejects")
    def check_counts_match_targets(data_root: DataRoot) -> dg.AssetCheckResult:
        rows = target_report(data_root.context(recipe), mix)
        table = "| source | target | selected | ok | why |\n|---|---:|---:|---|---|\n" + "\n".join(
            f"| {r['source']} | {r['target']} | {r['selected']} | {'yes' if r['ok'] else 'NO'} | {r['why']} |" for r in rows)
        return dg.AssetCheckResult(passed=all(r["ok"] for r in rows), metadata={"per_source": dg.MetadataValue.md(table)})

    @dg.asset_check(asset=mix_key(mix, "renders"), name="check_reject_rate", blocking=True,
                    description="Rejected records (normalize + render) stay under the recipe's max_reject_rate")
    def check_reject_rate(data_root: DataRoot) -> dg.AssetCheckResult:
        r = reject_rate(data_root.context(recipe), mix)
        return dg.AssetCheckResult(passed=r["ok"], metadata={
            "reject_rate": r["rate"], "limit": r["limit"], "rejected": r["rejected"], "read": r["read"],
            "per_source": dg.MetadataValue.json(r["per_source"])},
            description=f"reject rate {r['rate']:.2%} vs limit {r['limit']:.2%}")

    @dg.asset_check(asset=mix_key(mix, "index"), name="check_index_matches_shards", blocking=True,
                    description="index.parquet rows equal the tar contents and every checksum matches")
    def check_index_matches_shards(data_root: DataRoot) -> dg.AssetCheckResult:
        problems = verify_mix(data_root.context(recipe).layout.mix(mix))
        return dg.AssetCheckResult(passed=not problems, metadata={
            "problems": len(problems), "first_problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:20]) or "none")})

    @dg.asset_check(asset=mix_key(mix, "renders"), name="check_no_contamination_above_policy", blocking=True,
                    description="With decontamination set to drop, no training sample matching a benchmark image "
                    "is left in the mix")
    def check_no_contamination_above_policy(data_root: DataRoot) -> dg.AssetCheckResult:
        from imp_data.quality import contamination_left

        r = contamination_left(data_root.context(recipe), mix)
        return dg.AssetCheckResult(passed=r["ok"], metadata={"matched": r["matched"], "left": r["left"],
                                                              "policy": r["policy"]})

    return [check_counts_match_targets, check_reject_rate, check_index_matches_shards,
            check_no_contamination_above_policy]
