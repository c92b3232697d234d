"""The dataset card (issue 19): README.md in every built mix, its YAML front matter what the Hub reads, its
numbers exactly stats.json's, a BibTeX entry for Imp and for every source.

Run: pytest tests/test_card.py
"""

from __future__ import annotations

import json
import re

import pytest

from imp_data.audit.card import SOURCES, recipe_digest, render_card, split_card
from imp_data.core.citations import CITATIONS
from imp_data.core.layout import MixDir

MIXES = ["demo_stage1", "demo_stage2"]
# The Hub's licence identifiers this project's sources use (huggingface.co/docs/hub/repositories-licenses)
HUB_LICENSES = {"apache-2.0", "cc-by-4.0", "cc-by-nc-4.0", "cc0-1.0", "gpl-3.0", "other", "unknown"}
HUB_TASKS = {"visual-question-answering", "image-to-text", "image-text-to-text", "document-question-answering"}


def _card(demo_build, mix: str) -> tuple[dict, str, dict]:
    mix_dir = demo_build[0] / "mixes" / mix
    front, body = split_card(MixDir(mix_dir).card.read_text())
    return front, body, json.loads((mix_dir / "stats.json").read_text())


def _table(body: str, heading: str) -> list[list[str]]:
    """The rows of the first Markdown table after `heading`, cells stripped (header and rule left out)."""
    lines = body.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[start + 2:end]]


@pytest.mark.parametrize("mix", MIXES)
def test_front_matter_is_what_the_hub_reads(demo_build, mix):
    front, _, stats = _card(demo_build, mix)
    assert {"license", "configs", "dataset_info", "size_categories", "task_categories", "pretty_name"} <= set(front)
    assert set(front["license"]) <= HUB_LICENSES and front["license"] == sorted(set(front["license"]))
    assert set(front["task_categories"]) <= HUB_TASKS
    assert front["size_categories"] == ["n<1K"]
    assert ("license_name" in front) == ("other" in front["license"])
    (config,) = front["configs"]
    assert config["config_name"] == "default"
    (files,) = config["data_files"]
    shards = sorted(p.name for p in (demo_build[0] / "mixes" / mix / "shards").glob(files["path"].split("/")[1]))
    assert files["split"] == "train" and len(shards) == stats["totals"]["shards"] > 0
    info = front["dataset_info"]
    assert "splits" not in info  # `datasets` wants num_bytes of its own Arrow files there: unknown at build time
    assert info["download_size"] == stats["totals"]["shard_bytes"]
    names = [f["name"] for f in info["features"]]
    assert names == ["json", "jpg", "__key__", "__url__"]
    record = {f["name"]: f for f in info["features"][0]["struct"]}
    assert record["meta"] == {"name": "meta", "dtype": "string"}  # JSON text: typed readers keep every key
    licenses = {SOURCES[e["adapter"]][1] for e in stats["sources"].values()}
    assert set(front["license"]) == licenses


@pytest.mark.parametrize("mix", MIXES)
def test_source_table_is_stats_json(demo_build, mix):
    _, body, stats = _card(demo_build, mix)
    rows = _table(body, "## Sources and licences")
    *per_source, total = rows
    assert [r[0] for r in per_source] == list(stats["sources"])
    for row, (_name, e) in zip(per_source, stats["sources"].items()):
        dataset, licence, *numbers, reasons = row[1:]
        assert (dataset, licence) == SOURCES[e["adapter"]][0:3:2]
        assert numbers == [f"{v:,}" if isinstance(v, int) else str(v) for v in (
            e["target"], e["read"], sum(e["rejected"].values()), sum(e["dropped"].values()), e["taken"],
            e["shortfall"])]
        listed = {kind: {r: int(n.replace(",", "")) for r, n in re.findall(r"`([^`]+)` ([\d,]+)", part)}
                  for kind, _, part in (p.partition(": ") for p in reasons.split("; ")) if part}
        assert listed == {k: e[k] for k in ("rejected", "dropped") if e[k]}
    t = stats["totals"]
    assert total[0] == "**total**" and total[4:8] == [f"{t[k]:,}" for k in ("read", "rejected", "dropped", "taken")]


def test_geometry_seed_digest_and_loading(demo_build):
    _, body, stats = _card(demo_build, "demo_stage2")
    r, d = stats["render"], stats["distributions"]
    assert f"rendered to {r['resolution']}×{r['resolution']} px by `{r['mode']}`" in body
    assert f"{d['with_image']} samples have an image, {d['text_only']} are text-only" in body
    geometry = {row[0]: row[1:] for row in _table(body, "## Image geometry")}
    for label, q in (("width (px)", d["orig_width"]), ("height (px)", d["orig_height"]),
                     ("aspect (w/h)", d["aspect"]["quantiles"])):
        assert [float(v) for v in geometry[label]] == [q[k] for k in ("p5", "p50", "p95", "p100")]
    assert f"- seed: `{stats['seed']}`" in body and f"- recipe digest: `{recipe_digest(stats)}`" in body
    build = dict(_table(body, "## Build"))
    assert build == {stage: f"`{v}`" for stage, v in stats["built_by"].items()}
    assert 'load_dataset("ORG/NAME", split="train")' in body and "missing_is_error=False" in body
    published = render_card(stats, repo_id="imp/demo", revision="v1")
    assert 'load_dataset("imp/demo", split="train", revision="v1")' in published
    assert "huggingface.co/datasets/imp/demo/resolve/v1/shards/demo_stage2-{000000..000004}.tar" in published


@pytest.mark.parametrize("mix", MIXES)
def test_bibtex_for_imp_and_every_source(demo_build, mix):
    _, body, stats = _card(demo_build, mix)
    bib = body.split("```bibtex\n", 1)[1].split("```", 1)[0]
    keys = re.findall(r"^@\w+\{([^,]+),$", bib, flags=re.MULTILINE)
    wanted = {SOURCES[e["adapter"]][4] for e in stats["sources"].values()}
    assert keys[0] == "shao2024imp" and set(keys[1:]) == wanted and len(keys) == len(wanted) + 1
    for entry in re.split(r"\n(?=@)", bib.strip()):
        assert entry.count("{") == entry.count("}")  # balanced: a BibTeX parser reads each whole
        assert re.search(r"^\s+title\s+= \{", entry, flags=re.MULTILINE) and re.search(r"^\s+year\s+= \{\d{4}\}", entry,
                                                                              flags=re.MULTILINE)


def test_every_adapter_has_facts_and_a_citation():
    from imp_data.sources.registry import ADAPTERS

    assert set(SOURCES) == set(ADAPTERS)
    assert {facts[4] for facts in SOURCES.values()} == set(CITATIONS)


def test_recipe_licence_note_is_shown_and_unknown_adapters_say_so(demo_build):
    _, _, stats = _card(demo_build, "demo_stage1")
    stats["sources"]["llava_pretrain"]["license"] = "other (LAION/CC/SBU terms + BLIP)"
    stats["sources"]["mine"] = {**stats["sources"]["llava_pretrain"], "adapter": "custom", "license": None}
    front, body = split_card(render_card(stats))
    rows = {r[0]: r for r in _table(body, "## Sources and licences")}
    assert rows["llava_pretrain"][2] == "other (LAION/CC/SBU terms + BLIP)"
    assert rows["mine"][1:3] == ["(unknown adapter)", "unknown: check the source's own terms"]
    assert front["license"] == ["other", "unknown"]
