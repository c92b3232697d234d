"""Full-count rehearsal: build `imp_1m` at the paper's Table 2 counts from synthetic sources, with attrition.

Why: take-N is exact only if every loss after selection is replaced from the seeded reserve, and a 1M
build meets losses of every kind at once. So this builds the real recipe (manifests/imp_1m.yaml, read at
run time: only locations are rewritten, takes scaled by --fraction, render resolution lowered) over
synthetic sources in their published layouts (bench/synth_sources.py + synth_images.py: every record its own distinct
32x32 image, LLaVA's and ALLaVA's in zips as published) with attrition injected:
  - LAION-GPT-V links served by a loopback HTTP server on 127.0.0.1: 18% dead (404, HTML served as 200,
    no answer before the read timeout), never so many that fewer than the take remain usable;
  - 0.5% corrupt or truncated images in every image source (LAION's served with status 200);
  - 0.2% exact duplicate records (LLaVA, ShareGPT-4V, ALLaVA, LAION-GPT-V);
  - training images planted in the decontamination benchmarks (LLaVA's eval layout; TextVQA as its zip).
Then it checks every loss against the ledger of what was injected, and prints per source target vs
taken, rejects by reason, time and peak RSS per stage (each stage in a fresh process, as bench/scale.py),
and a projection of the real build on 16 cores.

The render resolution is lowered (default 32 px, the synthetic images' own size) because at 384 px 1M
renders would take ~50 GB of cache and shards here; the projection scales the render stage with the
measured cost of real-sized images (~150 KB photos at 384 px) instead. Downloads use short timeouts
(1 s read, 2 attempts) so the dead links cost seconds, not the default 20 s x 3.

    python bench/rehearsal.py [--fraction 1.0] [--work /tmp/imp-rehearsal] [--workers 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rehearsal_audit import PROJECTION, audit, calibrate, project  # noqa: E402 (after the path insert)
from bench.rehearsal_build import LaionServer, rehearsal_recipe, run_stage, stage  # noqa: E402
from imp_data.core.stages import BUILT_BY_STAGES as MIX_STAGES  # noqa: E402

MIX = "imp_1m"  # the mix built by default (the paper's); --mix adds others of the recipe
MIRROR_VERSION = 1  # bump when bench/synth_images.py's rehearsal mirror changes


# ---------------------------------------------------------------------------------------------------------
# the whole rehearsal


def rehearse(work: Path, fraction: float = 1.0, workers: int = 2, resolution: int = 32, seed: int = 0,
             inline: bool = False, mixes: tuple[str, ...] = (MIX,), say=print) -> dict:
    """Mirror (reused when it matches), recipe, fresh data root, every stage, audit, projection."""
    import yaml

    from bench.synth_images import Duplicates, laion_fates, write_laion, write_rehearsal_mirror
    from imp_data.core.recipe import parse_recipe

    started = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    mirror = work / "mirror"
    wanted = {"fraction": fraction, "seed": seed, "version": MIRROR_VERSION}
    done = mirror / ".done"
    t = time.perf_counter()
    if done.is_file() and json.loads(done.read_text()) == wanted:
        ledger = json.loads((mirror / "ATTRITION.json").read_text())
        say(f"synthetic mirror reused: {mirror}")
    else:
        shutil.rmtree(mirror, ignore_errors=True)
        ledger = write_rehearsal_mirror(mirror, fraction, seed, workers)
        done.write_text(json.dumps(wanted))
        say(f"synthetic mirror written in {time.perf_counter() - t:.0f}s: {sum(ledger['images'].values()):,} images, "
            f"{sum(ledger['records'].values()):,} annotation records")
    mirror_s = time.perf_counter() - t

    raw = rehearsal_recipe(work, ledger, fraction, resolution)
    unknown = [m for m in mixes if m not in raw["mixes"]]
    if unknown:
        raise SystemExit(f"--mix {unknown}: manifests/imp_1m.yaml has {', '.join(raw['mixes'])}")
    sources = list(dict.fromkeys(s for m in mixes for s in raw["mixes"][m]["sources"]))
    take = raw["mixes"][mixes[0]]["sources"]["laion_gpt4v"]["take"]
    fates = laion_fates(ledger["counts"]["laion"], take if isinstance(take, int) else ledger["counts"]["laion"], seed)
    server = LaionServer(fates, seed)
    stages: dict = {}
    try:
        dup = Duplicates()
        write_laion(mirror, ledger["counts"]["laion"], server.url, dup)
        ledger["duplicates"]["laion_gpt4v"] = dup.added["laion_gpt4v"]
        parse_recipe(raw, "imp_1m rehearsal")  # validate before writing
        (work / "imp_1m_rehearsal.yaml").write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
        shutil.rmtree(work / "data", ignore_errors=True)  # a cold build every time
        order = [("normalize", s) for s in sources]
        order += [("download", s) for s in sources if raw["sources"][s].get("download_images")]
        order += [(n, m) for m in mixes for n in MIX_STAGES]
        for name, arg in order:
            label = f"{name} {arg}"
            stages[label] = run_stage(name, arg, work, workers, inline)
            say(f"  {label:<36}{stages[label]['seconds']:>9.1f} s{stages[label]['peak_rss_mib']:>10.0f} MiB")
    finally:
        server.close()
    calib = calibrate(resolution, raw["render"].get("quality", 95), seed, work)
    source_stages = {k: v for k, v in stages.items() if k.split()[0] in ("normalize", "download")}
    result = {"fraction": fraction, "workers": workers, "resolution": resolution, "mirror_s": round(mirror_s, 1),
              "calibration": calib, "recipe": str(work / "imp_1m_rehearsal.yaml"),
              "laion_fates": {f: fates.count(f) for f in sorted(set(fates))},
              "injected": {"duplicates": ledger["duplicates"],
                           "corrupt": {s: len(v) for s, v in ledger["corrupt"].items()},
                           "planted": len(ledger["planted"])},
              "source_stages": source_stages, "mixes": {}}
    for mix in mixes:
        mine = {k.split()[0]: v for k, v in stages.items() if k.split() in ([n, mix] for n in MIX_STAGES)}
        r = audit(work, ledger, fates, workers, mix)
        r.update(stages=mine, projection=project({**source_stages, **mine}, r, calib, fraction, workers))
        result["mixes"][mix] = r
    result.update(wall_s=round(time.perf_counter() - started, 1), load=os.getloadavg(),
                  problems=[f"{m}: {p}" for m, r in result["mixes"].items() for p in r["problems"]])
    return result


def show(r: dict, say=print) -> None:
    say(f"\nimp_1m rehearsal at fraction {r['fraction']} ({r['workers']} workers, render {r['resolution']} px), "
        f"recipe {r['recipe']}")
    say(f"injected: duplicate records {r['injected']['duplicates']}; corrupt images {r['injected']['corrupt']}; "
        f"{r['injected']['planted']} training images planted in benchmarks; LAION-GPT-V URLs {r['laion_fates']}")
    for mix, m in r["mixes"].items():
        say(f"\n== {mix} (decontamination {m['policy']})")
        say(f"{'source':<16}{'target':>8}{'usable':>8}{'taken':>8}  exact  replaced  rejects / removals by reason")
        for row in m["rows"]:
            reasons = {**row["normalize_rejects"], **row["render_rejects"],
                       **{f"removed:{k}": v for k, v in row["removed"].items()}}
            text = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
            say(f"{row['source']:<16}{row['target']:>8}{row['usable']:>8}{row['taken']:>8}  "
                f"{'yes' if row['exact'] else 'NO':<5}{row['replaced']:>10}  {text}")
            if row["downloads"]:
                say(f"{'':<16}downloads: " + ", ".join(f"{k} {v}" for k, v in row["downloads"].items()))
            if row["why"] not in ("met", "target all"):
                say(f"{'':<16}{row['why']}")
        t = m["totals"]
        say(f"{'total':<32}{t['taken']:>8}  read {t['read']:,}, rejected {t['rejected']:,} "
            f"(rate {t['reject_rate']:.2%}), dropped {t['dropped']:,}")
        say("injected kinds seen: " + ", ".join(f"{k} {v}" for k, v in m["kinds"].items()))
        c, q = m["quality"]["contamination"], m["quality"]["reject_rate"]
        say(f"benchmark matches {c['matched']}, left in the shards {c['left']}; reject-rate check {q['rate']:.2%} "
            f"vs max {q['limit']:.0%}: {'ok' if q['ok'] else 'FAILS'}")
        say(f"\n{'stage':<30}{'seconds':>9}{'peak RSS MiB':>14}")
        for name, s in {**r["source_stages"], **m["stages"]}.items():
            say(f"{name:<30}{s['seconds']:>9.1f}{s['peak_rss_mib']:>14.0f}")
        say(f"{'(synthetic mirror, cached)':<30}{r['mirror_s']:>9.1f}")
        render = m["stages"]["render"]
        say("render by source: " + "; ".join(f"{k} {v['images']:,} img {v['seconds']:.0f}s ({v['chunks']} chunks)"
                                             for k, v in render["sources"].items())
            + f"; {render['rounds']} fill rounds, {render['removal_passes']} removal passes "
              f"{render['removal_seconds']:.0f}s")
        say("image store opened once (s): " + ", ".join(f"{k} {v}" for k, v in render["store_open_s"].items()))
        cal = r["calibration"]
        say(f"\nprojection: the real build of {mix}, full counts, {PROJECTION['cores']} cores (calibrated here: a "
            f"~{cal['real_kb']} KB photo -> 384 px {cal['real_s'] * 1e3:.1f} ms vs "
            f"synthetic {cal['synth_s'] * 1e3:.2f} ms; "
            f"hash-cache commit {cal['commit_s'] * 1e3:.1f} ms, fsynced write {cal['atomic_write_s'] * 1e3:.1f} ms; "
            f"render output ~{cal['render_kb']} KB)")
        P = PROJECTION
        say(f"assumptions: {P['cores']} cores at {P['efficiency']:.0%} parallel efficiency for the stages that use "
            f"--workers (render, shards); real images ~{P['real_kb']} KB rendered at 384 px (cost calibrated above); "
            f"disk {P['disk_mb_s']} MB/s; per-image I/O as on this disk; LAION-GPT-V {P['url_latency_s']} s per URL, "
            f"{P['per_host']} in flight per host; one-process stages linear in samples")
        say(f"{'stage':<42}{'here s':>9}{'here x1.0':>11}{'16 cores s':>12}  cores?  model")
        for p in m["projection"]:
            say(f"{p['stage']:<42}{p['measured_s']:>9.1f}{p['here_full_s']:>11.0f}{p['projected_s']:>12.0f}  "
                f"{p['cores'][:6]:<6}  {p['model']}")
        total, here = sum(p["projected_s"] for p in m["projection"]), sum(p["here_full_s"] for p in m["projection"])
        say(f"{'total':<42}{sum(p['measured_s'] for p in m['projection']):>9.1f}{here:>11.0f}{total:>12.0f}  "
            f"(full count: here ~{here / 60:.0f} min + the synthetic mirror; 16 cores ~{total / 60:.0f} min)")
    say(f"\nwall {r['wall_s']:.0f}s, load average at the end {', '.join(f'{x:.1f}' for x in r['load'])} "
        f"on {os.cpu_count()} CPUs")
    if r["problems"]:
        say("\nPROBLEMS:\n  " + "\n  ".join(r["problems"]))
    else:
        say("\nevery source met min(target, usable) exactly; every injected loss was found where it was put")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fraction", type=float, default=1.0, help="scale every count and take (1.0 = Table 2)")
    ap.add_argument("--work", default="/tmp/imp-rehearsal")
    ap.add_argument("--workers", type=int, default=2, help="processes for rendering and shard writing")
    ap.add_argument("--resolution", type=int, default=32, help="render side in px (real builds: 384)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inline", action="store_true", help="every stage in this process (faster; RSS not per stage)")
    ap.add_argument("--mix", action="append", help=f"mix of the recipe to build (default {MIX}; repeatable)")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--child")
    ap.add_argument("--arg", default="")
    args = ap.parse_args()
    work = Path(args.work)
    if args.child:
        print(json.dumps(stage(args.child, args.arg, work, args.workers)))
        return
    result = rehearse(work, args.fraction, args.workers, args.resolution, args.seed, args.inline,
                      tuple(args.mix or [MIX]))
    show(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    sys.exit(1 if result["problems"] else 0)


if __name__ == "__main__":
    main()
