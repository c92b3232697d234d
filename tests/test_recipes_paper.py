"""The paper's recipes: imp_1m's defaults (TextCaps and Imp's two record removals dropped, decontamination
report-only, a decontaminated twin), DVQA's short-answer suffix everywhere, removal by position in the
published file (not by normalized order), and Table 1's data ablation — five rows over imp_1m's sources,
each the row before plus the data the paper names, built on the fixture mirror with every mix reconciling.

Run: pytest tests/test_recipes_paper.py
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import polars as pl
import pytest
import yaml
from pydantic_core import to_jsonable_python

from imp_data.cli import main
from imp_data.core.errors import ImpDataError, RecipeError
from imp_data.core.recipe import MixSource, load_recipe, parse_recipe
from imp_data.core.source_options import SHORT_ANSWER_PROMPT
from imp_data.core.tables import SELECT_COLUMNS
from imp_data.mix.select import select_columns, select_source
from imp_data.normalize import normalize_records
from imp_data.sources.registry import get_adapter

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
IMP_REMOVALS = [245723, 247644]  # MILVLG/imp train.py: del list_data_dict[247644]; del list_data_dict[245723]
# Table 1 §3: each row after the first adds these sources at these takes (the 643K row adds a rule instead)
ROWS = [("ablation_665k", {}), ("ablation_643k", {}),
        ("ablation_675k", {"dvqa": 10000, "chartqa": 4000, "docvqa": 10000, "ai2d": 4000, "infographicvqa": 4000}),
        ("ablation_705k", {"sharegpt4v": 20000, "laion_gpt4v": 10000}),
        ("ablation_1m", {"allava": 300000})]
ROW_ADDS = {"ablation_675k": 32000, "ablation_705k": 30000, "ablation_1m": 300000}


def dump(value):
    """Models (also inside dicts and lists) as plain JSON values, for comparing recipe parts."""
    return to_jsonable_python(value)


def test_every_recipe_validates(capsys):
    paths = sorted(str(p) for p in MANIFESTS.glob("*.yaml"))
    assert {"imp_1m.yaml", "imp_1m_ablations.yaml", "demo.yaml"} <= {Path(p).name for p in paths}
    assert main(["validate", *paths]) == 0, capsys.readouterr()


def test_imp_1m_paper_defaults_and_decontaminated_twin():
    recipe = load_recipe(MANIFESTS / "imp_1m.yaml")
    assert list(recipe.mixes) == ["imp_1m", "imp_1m_decontaminated"]
    paper, clean = recipe.mixes["imp_1m"], recipe.mixes["imp_1m_decontaminated"]
    removals, textcaps = paper.sources["llava_665k"].drop
    assert (removals.name, removals.file_positions) == ("imp_removals", IMP_REMOVALS)
    assert (textcaps.name, textcaps.image_prefix) == ("textcaps", "textvqa/")
    assert not paper.decontaminate.drop and paper.decontaminate.remaining_limit() is None  # report only
    assert clean.decontaminate.drop and clean.decontaminate.remaining_limit() == 0
    # the twin differs in dropping only: same sources, rules, takes and benchmark splits
    assert dump(clean.sources) == dump(paper.sources)
    assert dump(clean.decontaminate.benchmarks) == dump(paper.decontaminate.benchmarks)
    # VQAv2 is matched by its test2015 images; eval/vqav2 itself would bring val's questions (and images)
    assert paper.decontaminate.benchmarks["vqav2"] == "eval/vqav2/test2015"
    assert not any("val2014" in loc for loc in paper.decontaminate.benchmarks.values())


@pytest.mark.parametrize("name", ["imp_1m.yaml", "imp_1m_ablations.yaml", "demo.yaml"])
def test_dvqa_has_the_short_answer_suffix(name):
    recipe = load_recipe(MANIFESTS / name)
    options = get_adapter("dvqa").parse_options(recipe.sources["dvqa"].options)
    assert options.prompt == SHORT_ANSWER_PROMPT == "Answer the question using a single word or phrase."


# ---------------------------------------------------------------------------------------------------------
# removal by position in the published file


def record(i: int, sid: str, answer: str, image: str | None = "coco/train2017/1.jpg") -> dict:
    rec = {"id": sid, "conversations": [{"from": "human", "value": "<image>\nWhat is it?" if image else "Hi"},
                                       {"from": "gpt", "value": f"{answer} {i}"}]}
    return rec | ({"image": image} if image else {})


def test_file_positions_match_what_imp_deletes(tmp_path):
    """A file laid out as published, with records normalize rejects before the positions removed: the rule
    drops exactly the records Imp's `del list_data_dict[i]` removes, which `order` would miss."""
    records = [record(i, f"r{i}", "x", None if i == 4 else "coco/train2017/1.jpg") for i in range(12)]
    del records[1]["conversations"]                  # rejected: missing_field
    records[3] = dict(records[2])                    # rejected: duplicate_record (same id and content)
    records[6]["id"] = records[9]["id"] = "r5"       # one id, three records: r5, r5#2, r5#3
    (tmp_path / "llava_v1_5_mix665k.json").write_text(json.dumps(records))
    adapter = get_adapter("llava_665k")
    reads = adapter.read(tmp_path, ["llava_v1_5_mix665k.json"], adapter.parse_options({}))
    counts = normalize_records("llava_665k", reads, tmp_path / "n.parquet", tmp_path / "r.parquet")
    assert (counts.read, counts.normalized) == (12, 10)

    share = MixSource.model_validate({"drop": [{"name": "imp_removals", "file_positions": [7, 9]}]})
    frame = pl.read_parquet(tmp_path / "n.parquet", columns=select_columns(share))
    sel = select_source(frame, "llava_665k", share, seed=0)
    kept = list(range(12))  # Imp's code, on positions: the larger index first
    del kept[9]
    del kept[7]
    positions = frame.with_columns(file_index=pl.col("meta").str.json_path_match("$.file_index").cast(pl.Int64))
    taken = positions.filter(pl.col("id").is_in(sel.taken["id"].implode()))
    assert set(taken["file_index"]) == set(kept) - {1, 3}  # less the two records normalize rejected
    assert sorted(sel.dropped["imp_removals"]["id"]) == ["llava_665k/r5#3", "llava_665k/r7"]
    assert sel.taken.columns == SELECT_COLUMNS  # meta served the rule, not the selection table
    by_order = frame.filter(pl.col("order").is_in([7, 9]))["id"].to_list()
    assert sorted(by_order) != sorted(sel.dropped["imp_removals"]["id"])  # two rejects shifted `order`

    with pytest.raises(ImpDataError, match="select_columns"):
        select_source(frame.drop("meta"), "llava_665k", share, seed=0)


def test_file_positions_refused_where_no_index_is_kept():
    raw = {"name": "r", "sources": {"dvqa": {"adapter": "dvqa", "location": "mirror/dvqa"}},
           "mixes": {"m": {"stage": 2, "sources": {"dvqa": {"drop": [{"name": "x", "file_positions": [3]}]}}}}}
    with pytest.raises(RecipeError, match=r"mixes\.m\.sources\.dvqa\.drop\.0\.file_positions: adapter 'dvqa'"):
        parse_recipe(raw)
    raw["sources"]["dvqa"]["adapter"] = "llava_665k"
    for bad in ([-1], [True], ["3"]):
        raw["mixes"]["m"]["sources"]["dvqa"]["drop"][0]["file_positions"] = bad
        with pytest.raises(RecipeError, match="file_positions"):
            parse_recipe(raw)


# ---------------------------------------------------------------------------------------------------------
# Table 1 §3, the data ablation


def test_ablation_rows_reconcile_to_table_1():
    ablations, imp_1m = load_recipe(MANIFESTS / "imp_1m_ablations.yaml"), load_recipe(MANIFESTS / "imp_1m.yaml")
    assert dump(ablations)["sources"] == dump(imp_1m)["sources"] and ablations.seed == imp_1m.seed
    assert list(ablations.mixes) == [name for name, _ in ROWS]
    first = ablations.mixes["ablation_665k"].sources
    assert list(first) == ["llava_665k"] and [r.name for r in first["llava_665k"].drop] == ["imp_removals"]
    assert first["llava_665k"].drop[0].file_positions == IMP_REMOVALS
    second = ablations.mixes["ablation_643k"].sources["llava_665k"]
    assert [(r.name, r.image_prefix) for r in second.drop][1:] == [("textcaps", "textvqa/")]
    for (before, _), (row, added) in pairwise(ROWS[1:]):
        prev, cur = ablations.mixes[before].sources, ablations.mixes[row].sources
        assert list(cur) == list(prev) + list(added), row  # the row before, in order, then the new data
        assert all(dump(cur[s]) == dump(prev[s]) for s in prev), row
        assert {s: cur[s].take for s in added} == added and sum(added.values()) == ROW_ADDS[row]
    assert dump(ablations.mixes["ablation_1m"].sources) == dump(imp_1m.mixes["imp_1m"].sources)
    for spec in ablations.mixes.values():  # each row reports benchmark matches as imp_1m does, dropping none
        assert dump(spec.decontaminate) == dump(imp_1m.mixes["imp_1m"].decontaminate)
        assert spec.dedup.mode == "off"


def mirror_recipe(tmp_path: Path) -> Path:
    """The ablation recipe pointed at the demo mirror: its sources read where demo.yaml reads them, its
    benchmarks and render settings the demo's, each take the demo's for that source (the mirror's scale)."""
    raw = yaml.safe_load((MANIFESTS / "imp_1m_ablations.yaml").read_text())
    demo = yaml.safe_load((MANIFESTS / "demo.yaml").read_text())
    for name, spec in raw["sources"].items():
        for key in ("location", "files", "images", "download_images"):
            spec.pop(key, None)
            if key in demo["sources"][name]:
                spec[key] = demo["sources"][name][key]
    demo_mix = demo["mixes"]["demo_stage2"]
    for key in ("render", "shard_size", "max_reject_rate"):
        raw[key] = demo[key]
    for spec in raw["mixes"].values():
        spec["partitions"] = 1
        spec["decontaminate"] = {**spec["decontaminate"], "benchmarks": demo_mix["decontaminate"]["benchmarks"]}
        spec["sources"] = {s: {**share, "take": demo_mix["sources"][s]["take"]} for s, share in spec["sources"].items()}
    path = tmp_path / "ablations_on_mirror.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_ablation_builds_on_fixture_mirror(tmp_path):
    from imp_data.build import build
    from imp_data.core.context import BuildContext
    from imp_data.core.layout import Layout
    from imp_data.fixtures import write_mirror

    write_mirror(tmp_path / "mirror", scale=1, seed=0)
    (tmp_path / "mirror" / "ai2d" / "ai2d_test_ids.txt").write_text("# the fixture has no AI2D test questions\n")
    recipe = load_recipe(mirror_recipe(tmp_path))
    result = build(BuildContext(recipe=recipe, data_root=tmp_path, workers=1, progress=False))
    layout, ids = Layout(tmp_path), {}
    for mix, spec in recipe.mixes.items():
        stats = json.loads(layout.stats(mix).read_text())
        assert stats["balanced"] and result["mixes"][mix]["totals"] == stats["totals"], mix
        for source, entry in stats["sources"].items():
            assert entry["read"] == sum(entry["dropped"].values()) + sum(entry["rejected"].values()) + entry["taken"]
            take = spec.sources[source].take
            if take != "all":  # exact take-N, or the whole usable source with its shortfall shown
                assert entry["taken"] + entry["shortfall"] == take, (mix, source)
                assert entry["shortfall"] == 0 or not entry["dropped"].get("not_sampled"), (mix, source)
        assert stats["contamination"] is not None and "## Contamination" in layout.report(mix).read_text()
        index = pl.read_parquet(layout.index(mix), columns=["id", "source"])
        ids[mix] = {s: set(index.filter(pl.col("source") == s)["id"]) for s in spec.sources}
    # rows differ by exactly the data the paper names: the previous row's samples stay the same samples
    textcaps = set(pl.read_parquet(layout.drops("ablation_643k")).filter(pl.col("reason") == "textcaps")["id"])
    assert textcaps and ids["ablation_643k"]["llava_665k"] == ids["ablation_665k"]["llava_665k"] - textcaps
    for (before, _), (row, added) in pairwise(ROWS[1:]):
        assert {s: ids[row][s] for s in ids[before]} == ids[before] and set(ids[row]) - set(ids[before]) == set(added)
    # every source normalized once, for all five mixes
    assert sorted(p.stem for p in (tmp_path / "normalized").glob("*.parquet")) == sorted(recipe.sources)


def test_dagster_materializes_each_source_once_for_all_rows():
    import dagster as dg

    from pipelines.definitions import build_definitions

    defs = build_definitions(MANIFESTS / "imp_1m_ablations.yaml", data_root="/nonexistent", runs=[])
    graph = defs.resolve_asset_graph()
    normalized = [k for k in graph.get_all_asset_keys() if k.path[0] == "normalized"]
    assert sorted(k.path[1] for k in normalized) == sorted(load_recipe(MANIFESTS / "imp_1m_ablations.yaml").sources)
    for mix, added in ROWS:
        deps = graph.get(dg.AssetKey([mix, "selection"])).parent_keys
        assert {k.path[1] for k in deps if k.path[0] == "normalized"} >= set(added), mix
    users = [m for m, _ in ROWS
             if dg.AssetKey(["normalized", "llava_665k"]) in graph.get(dg.AssetKey([m, "selection"])).parent_keys]
    assert users == [m for m, _ in ROWS]
