"""Selection and plan: drop rules name what they drop, take-N does not depend on input order and keeps
earlier picks when N grows, the shuffle is a pure function of (seed, ids), keys are positions.

Run: pytest tests/test_select_plan.py
"""

import polars as pl

from imp_data.core.recipe import DropRule, MixSource
from imp_data.mix.plan import plan_mix, shard_count
from imp_data.mix.select import select_source


def frame(n=200, seed=0):
    rows = [{"id": f"s/{i}", "source": "s", "source_id": str(i),
             "image": None if i % 10 == 0 else (f"textvqa/train_images/{i}.jpg" if i % 7 == 0 else f"coco/{i}.jpg"),
             "n_turns": 2, "text_chars": 10, "text_words": 2, "order": i} for i in range(n)]
    return pl.DataFrame(rows).sample(fraction=1.0, shuffle=True, seed=seed)


def test_drop_rules_and_take_are_order_free():
    spec = MixSource(take=50, drop=[DropRule(name="textcaps", image_prefix="textvqa/"),
                                    DropRule(name="text_only", text_only=True)])
    a, b = select_source(frame(seed=1), "s", spec, 7), select_source(frame(seed=2), "s", spec, 7)
    assert a.taken["id"].to_list() == b.taken["id"].to_list()
    assert a.taken.height == 50
    textcaps = {f"s/{i}" for i in range(200) if i % 7 == 0 and i % 10 != 0}
    assert set(a.dropped["textcaps"]["id"]) == textcaps
    assert a.dropped_counts == {"textcaps": len(textcaps), "text_only": 20,
                                "not_sampled": 200 - len(textcaps) - 20 - 50}
    assert a.available == 200 == a.taken.height + sum(a.dropped_counts.values())
    assert a.taken["order"].is_sorted()
    # a different seed picks differently; a larger N keeps every earlier pick
    other = select_source(frame(), "s", spec, 8)
    assert set(other.taken["id"]) != set(a.taken["id"])
    bigger = select_source(frame(), "s", MixSource(take=80, drop=spec.drop), 7)
    assert set(a.taken["id"]) <= set(bigger.taken["id"])


def test_take_all_and_more_than_available():
    sel = select_source(frame(30), "s", MixSource(take=1000), 0)
    assert sel.taken.height == 30 and "not_sampled" not in sel.dropped


def test_plan_is_deterministic_with_keys_and_shards():
    kept = frame(seed=3).select("id", "source")
    p1 = plan_mix(kept, mix="m", seed=1, shard_size=16)
    p2 = plan_mix(frame(seed=4).select("id", "source"), mix="m", seed=1, shard_size=16)
    assert p1.equals(p2)
    assert p1["key"].to_list()[:2] == ["000000000", "000000001"]
    assert p1["position"].to_list() == list(range(200))
    assert shard_count(p1) == 13 and p1.filter(pl.col("shard") == 12).height == 200 - 12 * 16
    assert not plan_mix(kept, mix="m", seed=2, shard_size=16)["id"].equals(p1["id"])
