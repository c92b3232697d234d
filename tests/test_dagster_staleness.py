"""Dagster shows staleness natively (issue 15): after a recipe edit or an edited source file (once its
`published/<source>` asset is observed), exactly the assets that read what changed are stale, per asset
key, read through Dagster's own stale-status resolver; materializing the stale ones until none is left
rewrites only what the edit touched (data versions are content hashes, so a step rebuilt into the same
bytes leaves what follows it fresh) and ends at the bytes the CLI writes for the same inputs.

Run: pytest tests/test_dagster_staleness.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.definitions.observe import observe
from dagster._core.loader import LoadingContextForTest

from imp_data.build import build
from imp_data.core.context import BuildContext
from imp_data.core.recipe import load_recipe
from pipelines.definitions import build_definitions
from tests.conftest import DEMO_RECIPE, edited_demo_recipe
from tests.test_rebuilds import edit_image, edit_text, outputs

S1, S2 = "demo_stage1", "demo_stage2"


def defs_for(recipe: Path, root: Path) -> dg.Definitions:
    return build_definitions(recipe, data_root=str(root), executor=dg.in_process_executor, runs=[])


def items(defs: dg.Definitions) -> list:
    return list(defs.assets or []) + list(defs.asset_checks or [])


def statuses(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict[str, StaleStatus]:
    """Dagster's stale status of every materializable asset (each shard partition on its own)."""
    graph = defs.resolve_asset_graph()
    resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
    out = {}
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        if node.partitions_def is None:
            out[key.to_user_string()] = resolver.get_status(key)
        else:
            for pk in node.partitions_def.get_partition_keys():
                out[f"{key.to_user_string()}[{pk}]"] = resolver.get_status(key, pk)
    return out


def stale(defs, instance) -> set[str]:
    return {k for k, v in statuses(defs, instance).items() if v != StaleStatus.FRESH}


def observe_sources(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    sources = [a for a in defs.assets if isinstance(a, dg.SourceAsset)]
    observe(sources, instance=instance, resources=dict(defs.resources))


def data_versions(defs, instance) -> dict[str, str | None]:
    graph = defs.resolve_asset_graph()
    out = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        pks = node.partitions_def.get_partition_keys() if node.partitions_def else [None]
        for pk in pks:
            record = instance.get_latest_data_version_record(key, is_source=not node.is_materializable,
                                                              partition_key=pk)
            event = (record.event_log_entry.asset_materialization or record.event_log_entry.asset_observation
                     ) if record else None
            version = event.tags.get("dagster/data_version") if event else None
            out[key.to_user_string() + (f"[{pk}]" if pk else "")] = version
    return out


def materialize_stale(defs: dg.Definitions, instance: dg.DagsterInstance, rounds: int = 12) -> list[set[str]]:
    """Materialize what is stale or missing, wave by wave, until nothing is: each wave takes the stale
    assets none of whose ancestors is stale (what Dagster's "materialize changed and missing" does once the
    assets before them are fresh). Returns what was stale before each wave."""
    graph = defs.resolve_asset_graph()
    resources = dict(defs.resources)
    seen = []
    for _ in range(rounds):
        todo = stale(defs, instance)
        if not todo:
            return seen
        seen.append(todo)
        names = {asset(k) for k in todo}
        wave = {k for k in todo if not {a.to_user_string() for a in dg.AssetSelection.assets(
            dg.AssetKey.from_user_string(asset(k))).upstream(include_self=False).resolve(graph)} & names}
        plain = [dg.AssetKey.from_user_string(k) for k in wave if "[" not in k]
        if plain:
            dg.materialize(items(defs), instance=instance, selection=plain, resources=resources)
        for k in sorted(k for k in wave if "[" in k):
            name, pk = k[:-1].split("[")
            dg.materialize(items(defs), instance=instance, selection=[dg.AssetKey.from_user_string(name)],
                           partition_key=pk, resources=resources)
    raise AssertionError(f"still stale after {rounds} rounds: {seen[-1]}")


def asset(name: str) -> str:
    return name.split("[")[0]


@pytest.fixture(scope="module")
def materialized(tmp_path_factory) -> Path:
    """A data root (`data/`) with every demo asset materialized (no training runs) and the persistent
    Dagster instance that did it (`dagster/`): each test works on its own copy of both."""
    from imp_data.fixtures import write_mirror

    base = tmp_path_factory.mktemp("dagster-stale")
    write_mirror(base / "data" / "mirror", scale=1, seed=0)
    (base / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(str(base / "dagster")) as instance:
        defs = defs_for(DEMO_RECIPE, base / "data")
        observe_sources(defs, instance)
        materialize_stale(defs, instance)
        assert stale(defs, instance) == set()
    return base


@pytest.fixture
def built(materialized, tmp_path):
    """(data root, Dagster instance): a private copy of the materialized demo."""
    shutil.copytree(materialized, tmp_path / "copy", symlinks=True)
    with dg.DagsterInstance.local_temp(str(tmp_path / "copy" / "dagster")) as instance:
        yield tmp_path / "copy" / "data", instance


def cli_build(root: Path, recipe: Path) -> None:
    build(BuildContext(recipe=load_recipe(recipe), data_root=root, progress=False))


def check_converges_to_cli(defs, instance, root: Path, recipe: Path, tmp_path: Path, mirror_edit=None) -> set[str]:
    """Materialize stale until fresh; the data root then equals a clean CLI build of the same inputs.
    Returns the assets whose data version changed."""
    before = data_versions(defs, instance)
    materialize_stale(defs, instance)
    after = data_versions(defs, instance)
    clean = tmp_path / "cli"
    shutil.copytree(root / "mirror", clean / "mirror")
    cli_build(clean, recipe)
    got, want = outputs(root), outputs(clean)
    assert sorted(got) == sorted(want)
    different = [k for k in got if got[k] != want[k]]
    assert different == [], f"files differ from a clean CLI build: {different}"
    return {asset(k) for k in after if after[k] != before.get(k)}


def test_recipe_edit_marks_exactly_the_stages_that_read_it(built, tmp_path):
    root, instance = built
    recipe = edited_demo_recipe(tmp_path, lambda r: r["render"].update(resolution=48))
    defs = defs_for(recipe, root)
    first = {asset(k) for k in stale(defs, instance)}
    # the stage that reads the render settings and everything made from it, in both mixes; sources untouched
    assert first == {f"{m}/{a}" for m in (S1, S2) for a in RENDERED_ON}
    changed = check_converges_to_cli(defs, instance, root, recipe, tmp_path)
    # removals ran again and found the same duplicates at 48 px: same bytes, so its data version holds
    assert {a for a in changed if not a.startswith(("published/", "raw/", "normalized/"))} == \
        {f"{m}/{a}" for m in (S1, S2) for a in RENDERED_ON if a != "removals"}
    assert not any(a.startswith(("raw/", "normalized/")) for a in changed)


RENDERED_ON = ("renders", "removals", "plan", "shards", "index", "report")
SELECTED_ON = ("selection", "renders", "removals", "plan", "shards", "index", "report")
SELECTION_EDITS = {
    # edit: (recipe change, the mixes whose assets from `selection` on it reaches)
    "take": (lambda r: r["mixes"][S2]["sources"]["chartqa"].update(take=6), (S2,)),
    "drop_rule": (lambda r: r["mixes"][S2]["sources"]["dvqa"].update(
        drop=[{"name": "no_such_id", "source_ids": ["nonexistent"]}]), (S2,)),
    "seed": (lambda r: r.update(seed=4321), (S1, S2)),
}


@pytest.mark.parametrize("edit", list(SELECTION_EDITS))
def test_selection_edit_marks_that_mix_from_its_selection_on(built, tmp_path, edit):
    root, instance = built
    change, mixes = SELECTION_EDITS[edit]
    recipe = edited_demo_recipe(tmp_path, change)
    defs = defs_for(recipe, root)
    assert {asset(k) for k in stale(defs, instance)} == {f"{m}/{a}" for m in mixes for a in SELECTED_ON}
    changed = check_converges_to_cli(defs, instance, root, recipe, tmp_path)
    assert not any(a.startswith(("raw/", "normalized/")) for a in changed)
    if S1 not in mixes:
        assert not any(a.startswith(S1) for a in changed)


def test_edited_source_file_is_stale_once_observed_and_only_its_descendants_rebuild(built, tmp_path):
    root, instance = built
    edit_text(root / "mirror", root)  # one letter of one planned LLaVA-665K answer
    defs = defs_for(DEMO_RECIPE, root)
    assert stale(defs, instance) == set(), "nothing is known to have changed before the source is observed"
    observe_sources(defs, instance)
    assert stale(defs, instance) == {"raw/llava_665k"}
    changed = check_converges_to_cli(defs, instance, root, DEMO_RECIPE, tmp_path)
    assert {"raw/llava_665k", "normalized/llava_665k", f"{S2}/plan", f"{S2}/shards",
            f"{S2}/index"} <= changed
    assert not any(a.startswith(S1) for a in changed), changed
    assert f"{S2}/selection" not in changed and f"{S2}/renders" not in changed  # rebuilt into the same bytes
    assert not {a for a in changed if a.startswith(("raw/", "normalized/"))} - {"raw/llava_665k",
                                                                                 "normalized/llava_665k"}


def test_edited_image_rerenders_through_dagster(built, tmp_path):
    root, instance = built
    edit_image(root / "mirror", root)  # one member of the COCO zip
    defs = defs_for(DEMO_RECIPE, root)
    observe_sources(defs, instance)
    coco = {s for s, spec in load_recipe(DEMO_RECIPE).sources.items()
            if any(r.location.endswith("coco/train2017.zip") for r in spec.images)}
    assert stale(defs, instance) == {f"raw/{s}" for s in coco}
    changed = check_converges_to_cli(defs, instance, root, DEMO_RECIPE, tmp_path)
    assert {f"{S2}/renders", f"{S2}/plan", f"{S2}/shards", f"{S2}/index"} <= changed
    assert not any(a.startswith(("normalized/", S1)) for a in changed), changed
