"""The build's stages, named once (docs/design.md §8).

A stage's *name* is a verb, and it is the only spelling of the stage: `imp-data build --until`, the reuse
report's lines, the sync table (imp_data.storage.sync), fingerprints and code versions
(imp_data.core.fingerprint), `imp-data validate` and the docs all use it. What a stage *writes* is a noun,
its `output`: the stamp unit under DATA/stamps/ and the Dagster asset key (`[output, source]` for a source
stage, `[mix, output]` for a mix stage), because Dagster names assets after the data they hold. Each stage
has exactly one output and each output one stage, so the two vocabularies map one to one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str  # the verb: what the stage does
    output: str  # the noun: what it writes (Dagster asset key part, stamp unit)
    scope: str  # "source" (once per source) or "mix" (once per mix)
    does: str  # one line for --help and the docs


STAGES: tuple[Stage, ...] = (
    Stage("fetch", "raw", "source", "make the source's files local (Hub, URL or a folder)"),
    Stage("normalize", "normalized", "source", "adapter records -> the sample schema; rejects with reasons"),
    Stage("download", "downloads", "source", "fetch the images of URL-only sources (download_images: true)"),
    Stage("select", "selection", "mix", "drop rules and seeded take-N per source"),
    Stage("render", "renders", "mix", "decode, resize-then-pad and hash every selected image; refill losses"),
    Stage("dedup", "removals", "mix", "duplicate and benchmark-contamination removals"),
    Stage("plan", "plan", "mix", "seeded shuffle, keys and shard numbers"),
    Stage("shards", "shards", "mix", "write (or verify and keep) the WebDataset tars"),
    Stage("finalize", "index", "mix", "index, wids index, rejects and reconciled stats"),
    Stage("report", "report", "mix", "report, dataset card and charts"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
BY_NAME = {s.name: s for s in STAGES}
SOURCE_STAGES = tuple(s.name for s in STAGES if s.scope == "source")
MIX_STAGES = tuple(s.name for s in STAGES if s.scope == "mix")
BUILT_BY_STAGES = MIX_STAGES[: MIX_STAGES.index("finalize") + 1]  # recorded in stats.json (report runs after)

# `--until` spellings of releases before the stages had one name each: each stops where it used to.
UNTIL_ALIASES = {"normalized": "download", "selected": "select", "rendered": "dedup", "planned": "plan"}


def until_stage(until: str | None) -> str | None:
    """The stage `--until` names (an older spelling maps to the stage it stopped after); ValueError if none."""
    if until is None:
        return None
    stage = UNTIL_ALIASES.get(until, until)
    if stage not in BY_NAME:
        raise ValueError(f"--until {until!r}: valid stages are {', '.join(STAGE_NAMES)}")
    return stage


def reached(until: str | None, stage: str) -> bool:
    """True when a build stopping after `until` stops once `stage` is done."""
    return until is not None and STAGE_NAMES.index(stage) >= STAGE_NAMES.index(until)
