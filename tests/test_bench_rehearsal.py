"""bench/rehearsal.py at a tiny fraction, every stage in this process: both imp_1m mixes built from the
synthetic mirror with attrition injected, so the rehearsal (and exact take-N under attrition) cannot rot.
The full-count run stays out of CI: `python bench/rehearsal.py` (README, Performance).

Run: pytest tests/test_bench_rehearsal.py
"""

from __future__ import annotations

import yaml

from tests.conftest import ROOT

FRACTION = 0.003
MIXES = ("imp_1m", "imp_1m_decontaminated")


def test_rehearsal_meets_scaled_targets_and_finds_every_injected_loss(tmp_path):
    from bench.rehearsal import rehearse, show

    result = rehearse(tmp_path, fraction=FRACTION, workers=2, inline=True, mixes=MIXES, say=lambda *a: None)
    assert result["problems"] == []

    recipe = yaml.safe_load((ROOT / "manifests" / "imp_1m.yaml").read_text())
    for mix in MIXES:
        m = result["mixes"][mix]
        met = 0
        for row in m["rows"]:
            take = recipe["mixes"][mix]["sources"][row["source"]]["take"]
            if take == "all":  # LLaVA-665K: everything the rules keep, less exactly the injected losses
                assert row["target"] == "all" and row["taken"] == row["usable"], row
                continue
            assert row["target"] == max(1, round(take * FRACTION)), row
            if row["usable"] >= row["target"]:
                assert row["taken"] == row["target"], row
                met += 1
            else:  # a source with too few usable records yields all of them, its shortfall explained
                assert row["taken"] == row["usable"] and row["why"].startswith("short"), row
        assert met >= 6, m["rows"]
        kinds = m["kinds"]
        assert all(kinds.values()), kinds  # duplicates, truncated, garbage, dead links (404/timeout/HTML), matches
        laion = next(r for r in m["rows"] if r["source"] == "laion_gpt4v")
        assert laion["replaced"] >= laion["dead_activated"] + laion["corrupt_activated"] > 0

    kept, dropped = result["mixes"]["imp_1m"], result["mixes"]["imp_1m_decontaminated"]
    assert kept["quality"]["contamination"]["left"] == kept["quality"]["contamination"]["matched"] > 0  # report only
    assert dropped["quality"]["contamination"]["left"] == 0
    removed = {r["source"]: sum(r["removed"].values()) for r in dropped["rows"]}
    assert removed["llava_665k"] > 0  # taken whole: its matches are lost, not replaced

    lines: list[str] = []
    show(result, say=lines.append)
    text = "\n".join(lines)
    assert "every source met min(target, usable) exactly" in text and "projection: the real build" in text
