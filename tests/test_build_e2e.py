"""End to end on the demo recipe (issue 3 acceptance): two builds are byte-identical, a build SIGKILLed
while writing shards resumes to the same bytes with no partial tar under a final name, webdataset reads
every sample back and the counts agree with the index, stats and rejects, export-llava round-trips
through the llava_665k adapter, and untrusted ids never become file or member names.

Run: pytest tests/test_build_e2e.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import polars as pl
import webdataset as wds

from imp_data.build import build
from imp_data.core.context import BuildContext
from imp_data.core.layout import Layout
from imp_data.core.recipe import load_recipe
from imp_data.shards.export import export_llava
from tests.conftest import DEMO_RECIPE, build_demo

MIXES = ("demo_stage1", "demo_stage2")


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def outputs(root: Path) -> dict[str, bytes]:
    """Every file the build wrote (the mirror is the input; `.imp-data/` is machine-local state: the
    stat-keyed file-hash cache and the build lock, never an output)."""
    return {k: v for k, v in tree_bytes(root).items() if not k.startswith(("mirror/", ".imp-data/"))}


def test_two_builds_are_byte_identical(demo_build, tmp_path):
    root, _ = demo_build
    other = tmp_path / "again"
    build_demo(other, workers=2)
    a, b = outputs(root), outputs(other)
    assert sorted(a) == sorted(b)
    different = [k for k in a if a[k] != b[k]]
    assert not different, f"files differ between builds: {different[:10]}"


def test_counts_agree_everywhere(demo_build):
    root, result = demo_build
    layout = Layout(root)
    for mix in MIXES:
        index = pl.read_parquet(layout.index(mix))
        wids = json.loads(layout.wids(mix).read_text())
        urls = [str(layout.shards_dir(mix) / s["url"]) for s in wids["shardlist"]]
        samples = list(wds.WebDataset(urls, shardshuffle=False))
        stats = json.loads(layout.stats(mix).read_text())
        assert len(samples) == index.height == stats["totals"]["taken"] == sum(s["nsamples"] for s in wids["shardlist"])
        assert [s["__key__"] for s in samples] == index["key"].to_list()
        for s in samples[:20]:
            rec = json.loads(s["json"])
            assert rec["key"] == s["__key__"] and rec["mix"] == mix
            assert ("jpg" in s) == (rec["image"] is not None)
        # every record of every source is either in a shard or in rejects.parquet, exactly once
        rejects = pl.read_parquet(layout.rejects(mix))
        for source, entry in stats["sources"].items():
            in_shards = index.filter(pl.col("source") == source).height
            rejected = rejects.filter(pl.col("source") == source).height
            assert in_shards + rejected == entry["read"], source
        plan = pl.read_parquet(layout.plan(mix))
        assert plan["id"].to_list() == index["id"].to_list()
        assert set(plan["id"]).isdisjoint(set(rejects["id"].drop_nulls()))


def test_textcaps_dropped_exactly(demo_build):
    root, _ = demo_build
    layout = Layout(root)
    normalized = pl.read_parquet(layout.normalized("llava_665k"))
    textvqa = set(normalized.filter(pl.col("image").str.starts_with("textvqa/"))["id"])
    assert textvqa, "the fixture must contain TextCaps records"
    drops = pl.read_parquet(layout.drops("demo_stage2"))
    assert set(drops.filter(pl.col("reason") == "textcaps")["id"]) == textvqa
    index = pl.read_parquet(layout.index("demo_stage2"))
    assert textvqa.isdisjoint(set(index["id"]))


def test_sigkill_during_shards_then_resume(demo_build, tmp_path):
    root, _ = demo_build
    data = tmp_path / "crash"
    data.mkdir(parents=True, exist_ok=True)
    (data / "mirror").symlink_to(root / "mirror", target_is_directory=True)
    env = {**os.environ, "IMP_DATA_THROTTLE_SHARDS": "0.3", "IMP_DATA_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "imp_data.cli", "build", str(DEMO_RECIPE), "--data-root", str(data),
           "--mix", "demo_stage2", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    shards = data / "mixes" / "demo_stage2" / "shards"
    deadline = time.time() + 120
    while time.time() < deadline and not list(shards.glob("*.tar")):
        time.sleep(0.02)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sorted(p.name for p in shards.glob("*.tar"))
    assert written, "the build never reached the shard stage"
    for tar in shards.glob("*.tar"):  # whatever is under a final name is a complete tar
        with tarfile.open(tar) as t:
            assert t.getmembers()
    assert not (data / "mixes" / "demo_stage2" / "index.parquet").exists(), "killed before finishing"
    assert subprocess.run(cmd, env={**env, "IMP_DATA_THROTTLE_SHARDS": "0"}).returncode == 0
    expected = {k: v for k, v in outputs(root).items() if k.startswith("mixes/demo_stage2/") and "/render/" not in k}
    got = {k: v for k, v in outputs(data).items() if k.startswith("mixes/demo_stage2/") and "/render/" not in k}
    assert sorted(got) == sorted(expected)
    assert [k for k in got if got[k] != expected[k]] == []


def test_export_llava_round_trips_through_adapter(demo_build, tmp_path):
    from imp_data.sources.registry import get_adapter

    root, _ = demo_build
    mix_dir = Layout(root).mix("demo_stage2")
    out = export_llava(mix_dir, tmp_path / "llava")
    adapter = get_adapter("llava_665k")
    records = list(adapter.read(out.parent, [out.name], adapter.parse_options({})))
    index = pl.read_parquet(mix_dir / "index.parquet")
    assert len(records) == index.height
    exported = json.loads(out.read_text())
    for rec, exp in zip(records, exported):
        assert rec.conversations == exp["conversations"] and rec.image == exp.get("image")
        if rec.image:
            assert (out.parent / rec.image).is_file()


def test_hostile_ids_never_become_names(tmp_path):
    """Sample ids with '../', '/', NUL and 1000 characters: shards use positional keys only."""
    from imp_data.fixtures import write_mirror

    hostile = ["../../etc/passwd", "a/b/c", "nul\x00byte", "x" * 1000]
    data = tmp_path / "d"
    write_mirror(data / "mirror", scale=1, seed=0)
    ann = data / "mirror" / "llava_pretrain" / "blip_laion_cc_sbu_558k.json"
    records = json.loads(ann.read_text())
    for rec, bad in zip(records, hostile):
        rec["id"] = bad
    ann.write_text(json.dumps(records))
    recipe = load_recipe(DEMO_RECIPE)
    ctx = BuildContext(recipe=recipe, data_root=data, progress=False)
    result = build(ctx, mixes=["demo_stage1"])
    assert result["mixes"]["demo_stage1"]["totals"]["taken"] > 0
    names = [p.name for p in data.rglob("*")]
    for bad in hostile:
        assert not any(bad.replace("\x00", "") in n for n in names if len(bad) > 5)
    for tar in (data / "mixes" / "demo_stage1" / "shards").glob("*.tar"):
        with tarfile.open(tar) as t:
            assert all(len(m.name) <= 14 and "/" not in m.name for m in t.getmembers())
    assert not (tmp_path / "etc").exists()
