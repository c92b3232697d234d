"""One name per stage (docs/design.md §8): `--until`, the sync table, code versions and the Dagster asset
keys all come from imp_data/core/stages.py, and each stage maps to exactly one Dagster asset.

Run: pytest tests/test_stages.py
"""

from __future__ import annotations

import pytest

from imp_data.core.fingerprint import CODE_VERSIONS
from imp_data.core.stages import BY_NAME, MIX_STAGES, STAGE_NAMES, STAGES, UNTIL_ALIASES, reached, until_stage
from imp_data.storage.sync import PULL_PUSH
from tests.conftest import ROOT


def test_every_vocabulary_uses_the_stage_names():
    assert tuple(CODE_VERSIONS) == STAGE_NAMES  # fingerprints and code versions, in pipeline order
    assert set(PULL_PUSH) == set(STAGE_NAMES) - {"shards"}  # shards sync one tar at a time (push_shard)
    assert len({s.output for s in STAGES}) == len(STAGES), "each stage writes its own output"


def test_until_takes_stage_names_and_the_old_spellings():
    assert [until_stage(s) for s in STAGE_NAMES] == list(STAGE_NAMES)
    assert {old: until_stage(old) for old in UNTIL_ALIASES} == UNTIL_ALIASES
    with pytest.raises(ValueError, match="valid stages are fetch, normalize, download, select"):
        until_stage("normalised")
    assert not reached(None, "report")
    assert reached("select", "select") and reached("select", "render") and not reached("select", "fetch")


@pytest.mark.filterwarnings("ignore")
def test_dagster_assets_are_the_stage_outputs_one_to_one():
    from pipelines.definitions import build_definitions

    defs = build_definitions(ROOT / "manifests" / "imp_1m.yaml", runs=[])  # LAION-GPT-V downloads its images
    keys = {tuple(k.path) for k in defs.resolve_asset_graph().get_all_asset_keys()}
    per_source = {k[0] for k in keys if k[0] in {s.output for s in STAGES} | {"published"}}
    assert per_source == {"published", "raw", "normalized", "downloads"}
    assert {k[1] for k in keys if k[0] == "downloads"} == {"laion_gpt4v"}  # only URL-only sources download
    for mix in ("imp_1m", "imp_1m_decontaminated"):
        assert {k[1] for k in keys if k[0] == mix} == {BY_NAME[s].output for s in MIX_STAGES}


def test_build_until_a_stage_stops_after_it(tmp_path):
    from imp_data.build import build
    from imp_data.core.context import BuildContext
    from imp_data.core.recipe import load_recipe
    from imp_data.fixtures import write_mirror

    write_mirror(tmp_path / "mirror")
    ctx = BuildContext(recipe=load_recipe(ROOT / "manifests" / "demo.yaml"), data_root=tmp_path, progress=False)
    build(ctx, until="dedup", mixes=["demo_stage1"])
    mix = ctx.layout.mix_files("demo_stage1")
    assert mix.removals.is_file() and mix.renders.is_file() and not mix.plan.exists()
    assert [r["stage"] for r in ctx.reuse if r["subject"] == "demo_stage1"] == ["select", "render", "dedup"]
