"""A data root in object storage: the demo recipe builds with `--data-root s3://…` against an S3-compatible
server on loopback (moto in server mode); its outputs land in the bucket byte-identical to a local build.
A second machine (a fresh cache) rebuilds without uploading or rendering anything, a Dagster shard step on a
third rewrites just a shard that went missing, and `webdataset` streams the mix back from the bucket.
Unit cases: ledgers, cut-off pushes, tampered objects and in-flight files.

Run: pytest tests/test_dataroot.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import webdataset as wds

from imp_data.core.errors import ImpDataError
from imp_data.publish.remote import shard_urls
from imp_data.storage.dataroot import LEDGER_DIR, RemoteRoot, open_data_root
from tests.conftest import DEMO_RECIPE, guarded_env
from tests.servers.s3_server import BUCKET, s3_server

ROOT_URL = f"s3://{BUCKET}/imp"
MIX = "demo_stage2"


@pytest.fixture(scope="module")
def s3():
    with s3_server() as fs:
        yield fs


def snapshot(fs) -> dict[str, tuple]:
    """Every object under the root with its ETag and modification time: unchanged iff nothing was PUT."""
    return {k: (v["ETag"], v["LastModified"]) for k, v in fs.find(f"{BUCKET}/imp", detail=True).items()}


@pytest.fixture(scope="module")
def remote_build(s3, tmp_path_factory, demo_build):
    """The demo mirror uploaded under the root by hand, then `imp-data build --data-root s3://…` (the CLI,
    in a subprocess: the user's path) working in cache A."""
    local_root, _ = demo_build
    s3.put(str(local_root / "mirror"), f"{BUCKET}/imp/mirror", recursive=True)
    cache = tmp_path_factory.mktemp("cache_a")
    env = guarded_env(dict(os.environ))
    out = subprocess.run([sys.executable, "-m", "imp_data.cli", "build", str(DEMO_RECIPE), "--data-root", ROOT_URL,
                          "--cache", str(cache), "--quiet"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"data root {ROOT_URL}" in out.stdout
    return local_root, cache


def test_outputs_land_in_the_bucket_byte_identical_to_a_local_build(s3, remote_build):
    local_root, cache = remote_build
    mix = f"mixes/{MIX}"
    wids = json.loads((local_root / mix / "shards" / "index.wids.json").read_text())
    sources = sorted(p.stem for p in (local_root / "rejects").glob("*.parquet"))
    assert len(sources) == 10
    expected = [f"{d}/{s}{ext}" for s in sources
                for d, ext in (("normalized", ".parquet"), ("normalized", ".counts.json"), ("rejects", ".parquet"))]
    expected += [f"{mix}/{f}" for f in ("selected.parquet", "drops.parquet", "renders.parquet", "removals.parquet",
                                         "contamination.parquet", "plan.parquet", "index.parquet", "rejects.parquet",
                                         "stats.json", "report.md", "shards/index.wids.json")]
    expected += [f"{mix}/shards/{s['url']}" for s in wids["shardlist"]]
    assert len(wids["shardlist"]) >= 2
    for rel in expected:
        assert s3.cat_file(f"{BUCKET}/imp/{rel}") == (local_root / rel).read_bytes(), rel
    # the render cache went up too (bulk), one JPEG per rendered sample
    renders = pl.read_parquet(local_root / mix / "renders.parquet").filter(pl.col("cache").is_not_null())
    jpgs = s3.find(f"{BUCKET}/imp/{mix}/render/cache")
    assert len(jpgs) >= renders.height > 0
    # every unit has a ledger, and each entry's hash is the object's
    ledger = json.loads(s3.cat_file(f"{BUCKET}/imp/{LEDGER_DIR}/mixes/{MIX}/shards/000000.json"))["files"]
    assert sorted(ledger) == [f"{mix}/shards/.parts/000000.parquet", f"{mix}/shards/{wids['shardlist'][0]['url']}"]
    assert ledger[f"{mix}/shards/{wids['shardlist'][0]['url']}"]["sha256"] == wids["shardlist"][0]["sha256"]
    assert not [k for k in s3.find(f"{BUCKET}/imp") if k.endswith((".tmp", ".incomplete"))]
    assert (cache / mix / "index.parquet").read_bytes() == (local_root / mix / "index.parquet").read_bytes()


def test_a_fresh_machine_rebuilds_without_uploading_or_rendering(s3, remote_build, tmp_path):
    from imp_data.build import build
    from imp_data.core.context import BuildContext
    from imp_data.core.recipe import load_recipe

    before = snapshot(s3)
    local, remote = open_data_root(ROOT_URL, tmp_path / "cache_b")
    build(BuildContext(recipe=load_recipe(DEMO_RECIPE), data_root=local, remote=remote, progress=False))
    assert snapshot(s3) == before  # not one PUT: every ledger and object already matched
    # chunks and shards were pulled and verified, so no JPEG was rendered or even downloaded
    assert not list((local / "mixes" / MIX / "render" / "cache").rglob("*.jpg"))
    local_root, _ = remote_build
    for rel in (f"mixes/{MIX}/index.parquet", f"mixes/{MIX}/stats.json"):
        assert (local / rel).read_bytes() == (local_root / rel).read_bytes()


def test_a_dagster_shard_step_on_a_fresh_pod_rewrites_only_the_missing_shard(s3, remote_build, tmp_path):
    import dagster as dg

    from imp_data.core.recipe import load_recipe
    from pipelines.assets import mix_assets
    from pipelines.resources import DataRoot

    local_root, _ = remote_build
    name = json.loads((local_root / "mixes" / MIX / "shards" / "index.wids.json").read_text())["shardlist"][0]["url"]
    tar = f"{BUCKET}/imp/mixes/{MIX}/shards/{name}"
    for key in (tar, f"{BUCKET}/imp/mixes/{MIX}/shards/.parts/000000.parquet",
                f"{BUCKET}/imp/{LEDGER_DIR}/mixes/{MIX}/shards/000000.json"):
        s3.rm(key)
    others = {k: v for k, v in snapshot(s3).items() if "/shards/" in k}
    recipe = load_recipe(DEMO_RECIPE)
    shards = next(a for a in mix_assets(recipe, MIX) if dg.AssetKey([MIX, "shards"]) in a.keys)
    result = dg.materialize([shards], partition_key="0000",
                            resources={"data_root": DataRoot(path=ROOT_URL, cache=str(tmp_path / "pod"))})
    assert result.success
    assert s3.cat_file(tar) == (local_root / "mixes" / MIX / "shards" / name).read_bytes()
    assert {k: v for k, v in snapshot(s3).items() if k in others} == others  # the other shards: untouched
    # the pod pulled only the JPEGs its shard needed
    plan = pl.read_parquet(local_root / "mixes" / MIX / "plan.parquet")
    needed = plan.filter((pl.col("shard") == 0) & pl.col("cache").is_not_null()).height
    assert len(list((tmp_path / "pod" / "mixes" / MIX / "render" / "cache").rglob("*.jpg"))) == needed


def test_webdataset_streams_the_mix_back_from_the_bucket(remote_build):
    local_root, _ = remote_build
    samples = list(wds.WebDataset(shard_urls(f"{ROOT_URL}/mixes/{MIX}"), shardshuffle=False))
    index = pl.read_parquet(local_root / "mixes" / MIX / "index.parquet")
    assert [s["__key__"] for s in samples] == index["key"].to_list()
    assert all(s["jpg"][:2] == b"\xff\xd8" for s in samples if "jpg" in s)


def test_source_folder_missing_from_the_bucket_is_one_clear_error(s3, tmp_path):
    from imp_data.build import fetch_source
    from imp_data.core.context import BuildContext
    from imp_data.core.recipe import load_recipe

    local, remote = open_data_root(f"s3://{BUCKET}/empty-root", tmp_path / "c")
    ctx = BuildContext(recipe=load_recipe(DEMO_RECIPE), data_root=local, remote=remote, progress=False)
    with pytest.raises(ImpDataError, match=r"s3://imp-bucket/empty-root/mirror/dvqa: nothing there for source 'dvqa'"):
        fetch_source(ctx, "dvqa")


# ---- ledger mechanics -----------------------------------------------------------------------------


def test_push_skips_what_the_ledger_holds_and_pull_verifies(s3, tmp_path):
    a = RemoteRoot(f"s3://{BUCKET}/unit", tmp_path / "a")
    (tmp_path / "a" / "t").mkdir(parents=True)
    one, two = tmp_path / "a" / "t" / "one.bin", tmp_path / "a" / "t" / "two.bin"
    one.write_bytes(b"1" * 1000)
    two.write_bytes(b"2" * 10)
    partial = tmp_path / "a" / "t" / ".three.bin.tmp"
    partial.write_bytes(b"half")
    assert a.push("u", [one, two, partial, tmp_path / "a" / "t" / "absent"]) == {"uploaded": 2, "skipped": 0}
    assert a.push("u", [one, two]) == {"uploaded": 0, "skipped": 2}
    two.write_bytes(b"22")
    assert a.push("u", [one, two]) == {"uploaded": 1, "skipped": 1}
    assert not s3.exists(f"{BUCKET}/unit/t/.three.bin.tmp")

    b = RemoteRoot(f"s3://{BUCKET}/unit", tmp_path / "b")
    assert b.pull("u") == 2 and (tmp_path / "b" / "t" / "two.bin").read_bytes() == b"22"
    assert b.pull("u") == 0  # verified in place
    assert b.pull("never-pushed") == 0

    s3.pipe_file(f"{BUCKET}/unit/t/one.bin", b"x" * 1000)  # rewritten behind its ledger (a cut-off push)
    c = RemoteRoot(f"s3://{BUCKET}/unit", tmp_path / "c")
    with pytest.raises(ImpDataError, match=r"s3://imp-bucket/unit/t/one.bin: does not match its ledger _ledger/u.json"):
        c.pull("u")
    assert not (tmp_path / "c" / "t" / "one.bin").exists()  # never left under its name


def test_a_push_cut_off_before_its_ledger_is_finished_by_the_rerun(s3, tmp_path, monkeypatch):
    r = RemoteRoot(f"s3://{BUCKET}/cut", tmp_path)
    files = []
    for i in range(3):
        files.append(tmp_path / f"f{i}")
        files[-1].write_bytes(bytes([i]) * 100)
    original = r.fs.pipe_file

    def fail_ledger(path, data, **kw):
        if LEDGER_DIR in path:
            raise ConnectionError("connection dropped")
        return original(path, data, **kw)

    monkeypatch.setattr(r.fs, "pipe_file", fail_ledger)
    with pytest.raises(ConnectionError):
        r.push("u", files)
    assert r.remote_ledger("u") is None  # no ledger: readers see no unit, not a partial one
    monkeypatch.setattr(r.fs, "pipe_file", original)
    assert r.push("u", files)["uploaded"] == 3
    assert sorted(r.remote_ledger("u")) == ["f0", "f1", "f2"]


def test_files_outside_the_cache_are_refused(s3, tmp_path):
    r = RemoteRoot(f"s3://{BUCKET}/x", tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    (tmp_path / "elsewhere").write_bytes(b"e")
    with pytest.raises(ImpDataError, match="outside the data root's cache"):
        r.push("u", [tmp_path / "elsewhere"])


def test_a_local_path_is_its_own_root(tmp_path, monkeypatch):
    monkeypatch.setenv("IMP_DATA_CACHE", str(tmp_path / "caches"))
    local, remote = open_data_root(tmp_path / "d")
    assert local == (tmp_path / "d").resolve() and remote is None
    local, remote = open_data_root("s3://b/p/")
    assert remote.url == "s3://b/p" and local.parent == tmp_path / "caches" and local.name.startswith("b_p-")


def test_index_step_and_its_checks_on_a_fresh_pod_read_from_the_bucket(s3, remote_build, tmp_path):
    import dagster as dg

    from imp_data.core.recipe import load_recipe
    from pipelines.assets import mix_assets
    from pipelines.resources import DataRoot

    recipe = load_recipe(DEMO_RECIPE)
    key = dg.AssetKey([MIX, "index"])
    finalize = next(a for a in mix_assets(recipe, MIX) if key in a.keys)  # index and report, one step
    selection = dg.AssetSelection.assets(key) | dg.AssetSelection.checks_for_assets(key)
    result = dg.materialize([finalize], selection=selection,
                            resources={"data_root": DataRoot(path=ROOT_URL, cache=str(tmp_path / "pod"))})
    assert [m.asset_key for m in result.asset_materializations_for_node(finalize.node_def.name)] == [key]
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == {"check_index_matches_shards", "check_taken_counts_match_targets"}
    assert all(e.passed for e in evaluations), [(e.check_name, e.description) for e in evaluations]
    local_root, _ = remote_build
    assert (tmp_path / "pod" / "mixes" / MIX / "stats.json").read_bytes() == \
        (local_root / "mixes" / MIX / "stats.json").read_bytes()


def test_train_from_a_bucket_pulls_the_mix_into_the_cache_first(s3, remote_build, tmp_path):
    from imp_data.cli import main

    cache = tmp_path / "node"
    run = Path(__file__).resolve().parent.parent / "manifests" / "runs" / "tiny_stage1.yaml"
    assert main(["train", str(run), "--data-root", ROOT_URL, "--cache", str(cache), "--set", "train.epochs=1"]) == 0
    local_root, _ = remote_build
    mix = Path("mixes") / "demo_stage1"
    for tar in (local_root / mix / "shards").glob("*.tar"):
        assert (cache / mix / "shards" / tar.name).read_bytes() == tar.read_bytes()
    assert (cache / "runs").is_dir()
    assert not (cache / "normalized").exists()  # a trainer needs the built mix, not the build's inputs
