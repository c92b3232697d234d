"""Recipe loading: the shipped recipes validate; a bad recipe reports every problem at once with its
YAML path; `imp-data validate RECIPE` exits 1 on one.

Run: pytest tests/test_recipe.py
"""

from pathlib import Path

import pytest
import yaml

from imp_data.cli import main
from imp_data.core.errors import RecipeError
from imp_data.core.recipe import load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parent.parent
GOOD = {
    "name": "r",
    "sources": {"dvqa": {"adapter": "dvqa", "location": "mirror/dvqa"}},
    "mixes": {"m": {"stage": 2, "sources": {"dvqa": {"take": 5}}}},
}


@pytest.mark.parametrize("name", ["demo.yaml", "imp_1m.yaml", "imp_1m_ablations.yaml", "llava_pretrain_558k.yaml"])
def test_shipped_recipes_validate(name):
    recipe = load_recipe(ROOT / "manifests" / name)
    assert recipe.mixes and recipe.sources


def test_imp_1m_matches_paper_table():
    recipe = load_recipe(ROOT / "manifests" / "imp_1m.yaml")
    mix = recipe.mixes["imp_1m"]  # imp_1m_decontaminated: tests/test_recipes_paper.py
    takes = {name: share.take for name, share in mix.sources.items()}
    assert takes == {"llava_665k": "all", "dvqa": 10000, "chartqa": 4000, "docvqa": 10000, "ai2d": 4000,
                     "infographicvqa": 4000, "sharegpt4v": 20000, "laion_gpt4v": 10000, "allava": 300000}
    removals, rule = mix.sources["llava_665k"].drop  # Imp's two record removals, then TextCaps
    assert removals.name == "imp_removals" and removals.file_positions == [245723, 247644]
    assert rule.name == "textcaps" and rule.image_prefix == "textvqa/"


def test_all_problems_reported_with_paths():
    bad = {
        "name": "Bad Name",
        "seed": "x",
        "render": {"mode": "crop", "fill": [0, 0, 300]},
        "sources": {
            "dvqa": {"adapter": "dvqa", "location": "mirror/dvqa", "options": {"no_such_option": 1}},
            "ghost": {"adapter": "nope", "location": "x"},
            "chartqa": {"location": "y"},
        },
        "mixes": {"m": {"stage": 3, "sources": {"dvqa": {"take": -1}, "missing": {}}}},
    }
    with pytest.raises(RecipeError) as err:
        parse_recipe(bad, "bad.yaml")
    text = str(err.value)
    for needle in ["name: String should match pattern", "seed: Input should be a valid integer",
                   "render.mode: Input should be 'pad', 'squash' or 'expand2square'", "render.fill",
                   "sources.chartqa.adapter: Field required",
                   "sources.ghost.adapter: unknown adapter 'nope'; valid: ai2d, allava, chartqa",
                   "sources.dvqa.options.no_such_option: Extra inputs are not permitted",
                   "mixes.m.stage: Input should be 1 or 2", "mixes.m.sources.dvqa.take",
                   "mixes.m.sources.missing: not declared under sources"]:
        assert needle in text, needle
    assert text.startswith("bad.yaml: ")


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nsources: [\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: invalid YAML at line 3"):
        load_recipe(path)
    path.write_text("- just a list\n")
    with pytest.raises(RecipeError, match="must be a YAML mapping"):
        load_recipe(path)


def test_validate_command_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    assert main(["validate", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**GOOD, "mixes": {"m": {"stage": 2, "sources": {"nope": {}}}}}))
    assert main(["validate", str(bad)]) == 1
    assert "mixes.m.sources.nope: not declared under sources" in capsys.readouterr().out
