"""Scale benchmark: the full-count `imp_1m` mix on one machine, stage by stage, in bounded memory.

Each stage runs in a fresh process so its peak RSS (ru_maxrss) is its own:
  1. normalize every source of imp_1m from synthetic files at real record counts (bench/synth_sources.py)
  2. select (TextCaps rule, seeded take-N) + plan (global shuffle, shard numbers) of the whole mix —
     renders are synthesised (fake hashes) since there are no real pixels here
  3. shard writing of a 50K-sample slice with 1 and 2 processes: byte-identical, and the speed-up
Targets (issue 9): normalize >= 50K records/s per process, peak RSS <= 2 GiB per stage, select + plan
<= 60 s, 2-process shard writing >= 1.8x faster than 1.

    python bench/scale.py [--fraction 1.0] [--work /tmp/imp-scale] [--slice 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SOURCES = ["llava_665k", "dvqa", "chartqa", "docvqa", "ai2d", "infographicvqa", "sharegpt4v", "laion_gpt4v", "allava"]


def scale_recipe(work: Path):
    """imp_1m with every source read in place from the synthetic folder."""
    import yaml

    from imp_data.core.recipe import parse_recipe

    raw = yaml.safe_load((ROOT / "manifests" / "imp_1m.yaml").read_text())
    for name, spec in raw["sources"].items():
        spec["location"] = str(work / "synth" / name)
        spec["images"] = [{"prefix": "", "location": str(work / "synth" / "images")}]
    return parse_recipe(raw, "imp_1m (synthetic)")


def stage(name: str, work: Path, arg: str) -> dict:
    """Run one stage in this process; return its measurements."""
    import polars as pl

    from imp_data.build import fetch_source, normalize_source, plan_stage, select_mix
    from imp_data.core.context import BuildContext

    ctx = BuildContext(recipe=scale_recipe(work), data_root=work / "data", progress=False)
    mix = "imp_1m"
    t0 = time.perf_counter()
    if name == "normalize":
        counts = normalize_source(ctx, arg, fetch_source(ctx, arg))
        out = {"records": counts.read}
    elif name == "select_plan":
        select_mix(ctx, mix)
        t_sel = time.perf_counter() - t0
        selected = pl.read_parquet(ctx.layout.selected(mix), columns=["id", "image"]).filter(
            pl.col("image").is_not_null())
        n = selected.height  # synthetic renders: every image "rendered" (hashes derived from the id)
        renders = selected.select(
            "id", pl.col("id").hash(1).cast(pl.String).str.zfill(64).str.slice(0, 64).alias("sha256"),
            pl.col("id").hash(2).map_elements(lambda h: f"{h:016x}", return_dtype=pl.String).alias("phash"),
            *[pl.lit(384, pl.Int32).alias(c) for c in ("orig_width", "orig_height", "width", "height")],
            pl.lit("shared.jpg").alias("cache"),
            pl.lit(None, pl.String).alias("reason"), pl.lit(None, pl.String).alias("detail"))
        ctx.layout.renders(mix).parent.mkdir(parents=True, exist_ok=True)
        renders.write_parquet(ctx.layout.renders(mix))
        from imp_data.mix.removals import empty_removals

        empty_removals().write_parquet(ctx.layout.removals(mix))
        t1 = time.perf_counter()
        plan = plan_stage(ctx, mix)
        out = {"records": plan.height, "select_s": round(t_sel, 2), "plan_s": round(time.perf_counter() - t1, 2),
               "images": n}
    elif name == "shards":
        from imp_data.shards.assemble import write_mix_shards

        workers, limit = (int(x) for x in arg.split(":"))
        ctx.workers = workers
        plan = pl.read_parquet(ctx.layout.plan(mix), columns=["shard", "position"])
        shards = sorted(set(plan.filter(pl.col("position") < limit)["shard"].to_list()))
        ctx_dir = ctx.layout.shards_dir(mix)
        for p in list(ctx_dir.glob("*.tar")) + list(ctx.layout.index_parts(mix).glob("*.parquet")):
            p.unlink()
        t0 = time.perf_counter()  # the shard writing alone: plan lookup and cleanup above are the bench's
        counts = write_mix_shards(ctx, mix, shards)
        out = {"records": sum(1 for _ in range(limit)), "shards": len(shards), **counts}
    else:
        raise SystemExit(f"unknown stage {name}")
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def child(name: str, work: Path, arg: str = "") -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--work", str(work), "--arg", arg],
                          capture_output=True, text=True, env={**os.environ, "IMP_DATA_PROGRESS": "0"})
    if proc.returncode:
        raise SystemExit(f"stage {name} {arg} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--work", default="/tmp/imp-scale")
    ap.add_argument("--slice", type=int, default=50_000)
    ap.add_argument("--child")
    ap.add_argument("--arg", default="")
    args = ap.parse_args()
    work = Path(args.work)
    if args.child:
        print(json.dumps(stage(args.child, work, args.arg)))
        return
    from bench.synth_sources import write_all

    t = time.perf_counter()
    if not (work / "synth" / ".done").exists():
        write_all(work / "synth", args.fraction)
        (work / "synth" / "images").mkdir(exist_ok=True)
        (work / "synth" / ".done").write_text("ok")
    print(f"synthetic sources ready in {time.perf_counter() - t:.0f}s (fraction {args.fraction})")
    print(f"{'stage':<26}{'records':>10}{'seconds':>9}{'rec/s':>10}{'peak RSS MiB':>14}")
    worst = 0.0
    for source in SOURCES:
        r = child("normalize", work, source)
        worst = max(worst, r["peak_rss_mib"])
        print(f"{'normalize ' + source:<26}{r['records']:>10}{r['seconds']:>9}"
              f"{r['records'] / max(r['seconds'], 1e-9):>10.0f}{r['peak_rss_mib']:>14}")
    r = child("select_plan", work)
    worst = max(worst, r["peak_rss_mib"])
    print(f"{'select + plan':<26}{r['records']:>10}{r['seconds']:>9}{r['records'] / r['seconds']:>10.0f}"
          f"{r['peak_rss_mib']:>14}"
          f"   (select {r['select_s']}s, plan {r['plan_s']}s)")
    # shard writing: every sample points at one shared tiny JPEG in the render cache
    from PIL import Image

    cache = work / "data" / "mixes" / "imp_1m" / "render" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (384, 384), (127, 127, 127)).save(cache / "shared.jpg", quality=95)
    results = {}
    for workers in (1, 2, 1, 2):  # interleaved, best of two: other load on the box hits both alike
        r = child("shards", work, f"{workers}:{args.slice}")
        if workers not in results or r["seconds"] < results[workers]["seconds"]:
            results[workers] = r
        worst = max(worst, r["peak_rss_mib"])
        print(f"{f'shards x{workers} process':<26}{args.slice:>10}{r['seconds']:>9}"
              f"{args.slice / r['seconds']:>10.0f}{r['peak_rss_mib']:>14}")
    print(f"shard writing speed-up with 2 processes: {results[1]['seconds'] / results[2]['seconds']:.2f}x; "
          f"worst peak RSS {worst:.0f} MiB")


if __name__ == "__main__":
    main()
