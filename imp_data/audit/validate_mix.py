"""`imp-data validate` on a mix directory: the mix's files checked against each other, not one by one.

Every file of a mix can be valid on its own and the mix still wrong: shards left from an earlier plan, a
tar edited by hand, an index or stats.json that no longer describe the tars, or a mix built by older code
or from a recipe that has since changed. So a mix is checked as a whole: each shard's records against the
plan rows (and the render settings stats.json records), each member's bytes against the hashes in
index.parquet, stats.json's counts against the index, and stats.json's `built_by` against today's code
versions and any recipe validated alongside. Every disagreement is one line naming file, shard, key and
field; stale is a problem, never OK.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
from pydantic import ValidationError

from imp_data.core.errors import ImpDataError, ShardError
from imp_data.core.fingerprint import CODE_VERSIONS
from imp_data.core.io import dumps_canonical, file_sha256, read_table
from imp_data.core.layout import MixDir
from imp_data.core.recipe import Recipe, RenderSpec, load_recipe
from imp_data.core.stages import BUILT_BY_STAGES

# Record fields whose expected value comes from stats.json (the mix and its render settings), not the plan.
FROM_STATS = {"mix", "location", "image.mode", "image.fill", "image.resolution", "image.resampler"}

Recipes = dict[str, list[tuple[Path, Recipe]]]
_UNKNOWN = object()  # an expected value stats.json could not supply: not compared


class _Full(Exception):
    """Raised once the report holds `limit` lines: nothing after it would be printed anyway."""


class _Report:
    def __init__(self, limit: int) -> None:
        self.lines: list[str] = []
        self.limit = max(1, limit)

    def add(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) >= self.limit:
            raise _Full

    def extend(self, lines: list[str]) -> None:
        for line in lines:
            self.add(line)


def declared_mixes(paths: list[Path]) -> Recipes:
    """Mix recipes among the validated paths (or directly inside a validated folder), by mix name.

    A mix validated next to the recipe that declares it is held to what that recipe asks for today. A
    YAML file that is not a loadable mix recipe (a run recipe, a broken one) is skipped here: its own
    check reports it.
    """
    found: Recipes = {}
    files = [p for path in paths for p in (sorted(path.iterdir()) if path.is_dir() else [path])]
    for path in files:
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        try:
            recipe = load_recipe(path)
        except ImpDataError:
            continue
        for mix in recipe.mixes:
            found.setdefault(mix, []).append((path, recipe))
    return found


def _show(value) -> str:
    """A value for a one-line message: lists and dicts (conversations, meta) by a short hash of their JSON."""
    if isinstance(value, (list, dict)):
        return f"sha256 {hashlib.sha256(dumps_canonical(value).encode('utf-8')).hexdigest()[:12]}…"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:40] + "…"


def _pipeline_order(stage: str) -> tuple[int, str]:
    base = stage.split("/")[0]
    return (list(CODE_VERSIONS).index(base) if base in CODE_VERSIONS else len(CODE_VERSIONS), stage)


def _version(recorded: str) -> tuple[str, str]:
    code, _, recipe_digest = str(recorded).partition("-")
    return code, recipe_digest


def stale_lines(mix_dir: Path, stats: dict, mix: str, recipes: Recipes) -> list[str]:
    """Why this mix no longer matches the code (stats.json `built_by`) or a recipe declaring it, if it doesn't."""
    from imp_data.stage_inputs import code_version

    declaring = recipes.get(mix, [])
    rebuild = f"rebuild with imp-data build {declaring[0][0] if declaring else 'RECIPE'}"
    built_by = stats.get("built_by")
    if not isinstance(built_by, dict) or not built_by:
        return [f"{mix_dir}: stale — stats.json records no built_by (built by an older imp-data); {rebuild}"]
    expected = [f"normalize/{s}" for s in sorted(stats.get("sources") or {})] + list(BUILT_BY_STAGES)
    code_diffs = []
    for stage in sorted(set(expected) | set(built_by), key=_pipeline_order):
        now = CODE_VERSIONS.get(stage.split("/")[0])
        if stage not in built_by:
            code_diffs.append(f"stage {stage}: not recorded, now {now}")
        elif _version(built_by[stage])[0] != now:
            code_diffs.append(f"stage {stage}: code version {_version(built_by[stage])[0]}, now {now}")
    lines = []
    if code_diffs:
        lines.append(f"{mix_dir}: stale — built by an older imp-data ({'; '.join(code_diffs)}); {rebuild}")
    for path, recipe in declaring:
        wanted = {f"normalize/{s}": code_version(recipe, "normalize", s) for s in recipe.mixes[mix].sources}
        wanted.update({stage: code_version(recipe, stage, mix) for stage in BUILT_BY_STAGES})
        changed = [stage for stage in sorted(set(wanted) | set(built_by), key=_pipeline_order)  # recipe half
                   if stage not in wanted or stage not in built_by
                   or _version(wanted[stage])[1] != _version(built_by[stage])[1]]
        if changed:
            what = f"stage {changed[0]} reads" if len(changed) == 1 else f"stages {', '.join(changed)} read"
            lines.append(f"{mix_dir}: stale — the recipe {path} changed what {what} since this mix was built; "
                         f"rebuild with imp-data build {path}")
    return lines


def _load_stats(mix_dir: Path, report: _Report) -> dict | None:
    path = MixDir(mix_dir).stats
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        report.add(f"{path}: missing or unreadable ({err}); the mix cannot be checked against its stats — "
                   "rebuild with imp-data build RECIPE")
        return None
    if not isinstance(stats, dict):
        report.add(f"{path}: not a JSON object")
        return None
    return stats


def check_stats_vs_index(stats_path: Path, stats: dict, index: pl.DataFrame, report: _Report) -> None:
    """stats.json's counts must be the index's: a report or a trainer sizing an epoch from them relies on it."""
    totals = stats.get("totals") or {}
    if totals.get("taken") != index.height:
        report.add(f"{stats_path}: field totals.taken: {totals.get('taken')} != {index.height} rows in index.parquet")
    shards = index["shard_name"].n_unique() if index.height else 0
    if totals.get("shards") != shards:
        report.add(f"{stats_path}: field totals.shards: {totals.get('shards')} != {shards} shards in index.parquet")
    per_source = dict(index.group_by("source").len().rows()) if index.height else {}
    sources = stats.get("sources") or {}
    for source in sorted(set(sources) | set(per_source)):
        taken = (sources.get(source) or {}).get("taken")
        if taken != per_source.get(source, 0):
            report.add(f"{stats_path}: field sources.{source}.taken: {taken} != {per_source.get(source, 0)} rows "
                       f"of source {source} in index.parquet")


def check_index_vs_plan(index_path: Path, index: pl.DataFrame, plan: pl.DataFrame, report: _Report) -> None:
    """The index's per-sample columns must be the plan's: stats and training read them without the tars."""
    cols = ["key", "shard", "id", "source", "source_id", "sha256"]
    joined = plan.select(cols).join(index.select(cols), on="key", how="full", suffix="_index", coalesce=True)
    for row in joined.iter_rows(named=True):
        if row["shard"] is None:
            report.add(f"{index_path}: key {row['key']}: in index.parquet but not in plan.parquet")
        elif row["shard_index"] is None:
            report.add(f"{index_path}: key {row['key']}: in plan.parquet (shard {row['shard']}) but not in the index")
        else:
            for field in cols[1:]:
                if row[field] != row[f"{field}_index"]:
                    report.add(f"{index_path}: key {row['key']} field {field}: differs from plan.parquet "
                               f"(index: {_show(row[f'{field}_index'])}, plan: {_show(row[field])})")


def _member_hashes(tar: Path, rows: list[dict], report: _Report) -> None:
    """Each member's bytes at the index's offsets hash to the index's sha256: what a reader trusts per sample."""
    with open(tar, "rb") as f:
        for row in rows:
            for ext in ("json", "jpg"):
                if f"{ext}_sha256" not in row:
                    continue  # an index from before member hashes: check_mix names it once
                offset, size, want = row.get(f"{ext}_offset"), row.get(f"{ext}_size"), row[f"{ext}_sha256"]
                if offset is None and want is None:
                    continue  # a text-only sample has no jpg
                f.seek(offset or 0)
                got = hashlib.sha256(f.read(size or 0)).hexdigest()
                if got != want:
                    report.add(f"{tar}: key {row['key']} field {ext}_sha256: {row['key']}.{ext} bytes differ from "
                               f"index.parquet (sha256 {got[:12]}… vs {str(want)[:12]}…)")


def _compare_record(where: str, record: dict, expected: dict, report: _Report) -> None:
    """Field by field, KEY.json against the record the plan and stats.json say the shard writer made."""
    both_images = isinstance(record.get("image"), dict) and isinstance(expected.get("image"), dict)

    def fields(obj: dict) -> dict:  # image.* one by one when both have one; else the image as a whole
        flat = {k: v for k, v in obj.items() if k != "image" or not both_images}
        if both_images:
            flat.update({f"image.{k}": v for k, v in obj["image"].items()})
        return flat

    got, want = fields(record), fields(expected)
    for field in sorted(set(got) | set(want)):
        if want.get(field, got.get(field)) is _UNKNOWN:
            continue
        if field not in want:
            report.add(f"{where} field {field}: in the tar but not in the record the plan makes")
        elif got.get(field) != want[field]:
            ref = "stats.json" if field in FROM_STATS else "plan.parquet"
            report.add(f"{where} field {field}: differs from {ref} (tar: {_show(got.get(field))}, "
                       f"{ref.split('.')[0]}: {_show(want[field])})")


def check_shard(tar: Path, plan_rows: list[dict], index_rows: list[dict], expect, report: _Report) -> None:
    """One shard: the tar's sha256 and members' hashes against the index, its samples against the schema,
    and its records, keys and JPEG sizes against the plan and the render settings."""
    from imp_data.audit.sample_check import check_sample
    from imp_data.shards.assemble import sample_json  # the writer's own record layout: one source of truth
    from imp_data.shards.reader import iter_tar_samples

    if index_rows and file_sha256(tar) != index_rows[0].get("shard_sha256"):
        report.add(f"{tar}: sha256 differs from the index (field shard_sha256)")
    _member_hashes(tar, index_rows, report)
    planned = {row["key"]: row for row in plan_rows}
    if not plan_rows:
        report.add(f"{tar}: shard not in plan.parquet (left from another build?)")
    seen = set()
    try:
        for key, record, jpg in iter_tar_samples(tar):
            where = f"{tar}: key {key}"
            seen.add(key)
            report.extend(check_sample(where, key, record, jpg, expect.resolution))
            if not plan_rows or record is None:
                continue
            if key not in planned:
                report.add(f"{where}: in the tar but not in plan.parquet")
                continue
            _compare_record(where, record, expect.record(sample_json, planned[key]), report)
    except ShardError as err:
        report.add(str(err))
        return
    for key in planned:
        if key not in seen:
            report.add(f"{tar}: key {key}: in plan.parquet but missing from the tar")


class _Expect:
    """What stats.json says every record shares: the mix, each source's location, the render settings."""

    def __init__(self, mix: str, stats: dict | None, report: _Report, stats_path: Path) -> None:
        self.mix, self.render, self.locations = mix, None, {}
        if stats is None:
            return
        try:
            self.render = RenderSpec.model_validate(stats.get("render"))
        except ValidationError as err:
            report.add(f"{stats_path}: field render: not render settings ({err.error_count()} error(s))")
        self.locations = {s: e.get("location") for s, e in (stats.get("sources") or {}).items()
                          if isinstance(e, dict)}

    @property
    def resolution(self) -> int | None:
        return self.render.resolution if self.render else None

    def record(self, sample_json, row: dict) -> dict:
        render = self.render or RenderSpec()
        expected = json.loads(sample_json(row, mix=self.mix, location=self.locations.get(row["source"]),
                                          render=render))
        if row["source"] not in self.locations:
            expected["location"] = _UNKNOWN
        if self.render is None and isinstance(expected.get("image"), dict):
            expected["image"].update({k: _UNKNOWN for k in ("mode", "fill", "resolution", "resampler")})
        return expected


def check_mix(mix_dir: Path, limit: int, recipes: Recipes | None = None) -> list[str]:
    """Problems with a mix directory as a whole (at most `limit` lines), stale first."""
    from imp_data.core.layout import shard_name
    from imp_data.shards.reader import verify_mix

    report, files = _Report(limit), MixDir(mix_dir)
    try:
        stats = _load_stats(mix_dir, report)
        index = read_table(files.index)
        mix = (stats or {}).get("mix") or (index["shard_name"][0].rsplit("-", 1)[0] if index.height
                                            else mix_dir.name)
        if stats is not None:
            report.extend(stale_lines(mix_dir, stats, mix, recipes or {}))
        try:
            report.extend(verify_mix(mix_dir, checksums=False))  # wids list, sizes, key order; sha256 below
        except ValueError as err:  # an offset pointing at bytes that are not JSON at all
            report.add(f"{mix_dir / 'index.parquet'}: json_offset does not point at a KEY.json ({err})")
        missing = {"json_sha256", "jpg_sha256"} - set(index.columns)
        if missing:
            report.add(f"{mix_dir / 'index.parquet'}: no member hashes ({', '.join(sorted(missing))}): built by "
                       "an older imp-data; rebuild with imp-data build RECIPE")
        if stats is not None:
            check_stats_vs_index(files.stats, stats, index, report)
        plan_path = files.plan
        if not plan_path.is_file():
            report.add(f"{plan_path}: missing — the shards cannot be checked against their plan")
            return report.lines
        plan = read_table(plan_path)
        check_index_vs_plan(files.index, index, plan, report)
        expect = _Expect(mix, stats, report, files.stats)
        plan_by = {shard_name(mix, n): frame.sort("position").to_dicts()
                   for (n,), frame in plan.partition_by("shard", as_dict=True).items()}
        index_by = {name: frame.to_dicts() for (name,), frame in index.partition_by("shard_name", as_dict=True).items()}
        on_disk = {p.name for p in files.shard_tars()}
        for name in sorted(set(plan_by) | set(index_by) | on_disk):
            tar = files.shards / name
            if not tar.is_file():
                if name not in index_by:  # verify_mix already named a tar the index lists
                    report.add(f"{tar}: in plan.parquet but missing")
                continue
            check_shard(tar, plan_by.get(name, []), index_by.get(name, []), expect, report)
    except _Full:
        pass
    return report.lines
