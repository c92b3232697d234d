"""Full-count rehearsal: build `imp_1m` at the paper's Table 2 counts from synthetic sources, with attrition.

Why: take-N is exact only if every loss after selection is replaced from the seeded reserve, and a 1M
build meets losses of every kind at once. So this builds the real recipe (manifests/imp_1m.yaml, read at
run time: only locations are rewritten, takes scaled by --fraction, render resolution lowered) over
synthetic sources in their published layouts (bench/synth_sources.py: every record its own distinct
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
import math
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imp_data.core.stages import BUILT_BY_STAGES as MIX_STAGES  # noqa: E402 (after the path insert)

MIX = "imp_1m"  # the mix built by default (the paper's); --mix adds others of the recipe
CHUNK = 1024  # imp_data.mix.render.CHUNK: images per render job, each job opening the source's image store
MIRROR_VERSION = 1  # bump when bench/synth_sources.py's rehearsal mirror changes
READ_TIMEOUT = 1.0
# Published archive sizes (members) behind each source's image roots, for the projection of the per-chunk
# store opening: COCO train2017 118,287; GQA 148,854; TextVQA train_val 28,408; VG 64,346 + 43,903;
# LLaVA-Pretrain 558,128; ShareGPT-4V web zips ~2K; ALLaVA-LAION 505,588 (`**/`); Vision-Flan 191-task ~191K.
REAL_MEMBERS = {"llava_665k": 403_798, "sharegpt4v": 678_413, "allava": 696_588}
PROJECTION = {"cores": 16, "efficiency": 0.8, "real_kb": 150, "disk_mb_s": 1000, "url_latency_s": 0.5,
              "per_host": 4}


# ---------------------------------------------------------------------------------------------------------
# the recipe


def rehearsal_recipe(work: Path, ledger: dict, fraction: float, resolution: int) -> dict:
    """manifests/imp_1m.yaml with every location in the synthetic mirror, numeric takes scaled by
    `fraction`, and the render resolution set to `resolution` (recipe-level and any mix override)."""
    import yaml

    mirror = work / "mirror"
    raw = yaml.safe_load((ROOT / "manifests" / "imp_1m.yaml").read_text())
    empty = mirror / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    unknown = [s for s in raw["sources"]
               if s not in ledger["image_roots"] and not raw["sources"][s].get("download_images")]
    if unknown:
        raise SystemExit(f"bench/synth_sources.py writes no images for source(s) {unknown}: extend it first")
    for name, spec in raw["sources"].items():
        spec["location"] = str(mirror / name)
        if spec.get("download_images"):
            continue  # the downloader's folder under the data root, as the recipe says
        synth = ledger["image_roots"][name]
        for root in spec.get("images", []):
            found = synth.get(root.get("prefix", ""))
            if found is None:  # a root none of the synthetic records use (ShareGPT-4V's COCO, web zips...)
                root["location"] = str(empty)
                continue
            if root.get("member_prefix", "") != found["member_prefix"]:
                raise SystemExit(f"{name} image root {root.get('prefix')!r}: the recipe reads member prefix "
                                 f"{root.get('member_prefix', '')!r}, the published layout has "
                                 f"{found['member_prefix']!r}")
            root["location"] = found["location"]
    raw.setdefault("render", {})["resolution"] = resolution
    seen: set[int] = set()  # mixes share sources and benchmarks through YAML anchors: rewrite each once
    for mix in raw["mixes"].values():
        if mix.get("render"):
            mix["render"]["resolution"] = resolution
        if id(mix["sources"]) not in seen:
            seen.add(id(mix["sources"]))
            for share in mix["sources"].values():
                if isinstance(share.get("take"), int):
                    share["take"] = max(1, round(share["take"] * fraction))
        benchmarks = mix.get("decontaminate", {}).get("benchmarks") or {}
        if id(benchmarks) not in seen:
            seen.add(id(benchmarks))
            for bench, location in benchmarks.items():
                benchmarks[bench] = str(benchmark_copy(mirror, bench, str(location)))
    raw["description"] = f"{raw.get('description', '')} — rehearsal over {mirror} (fraction {fraction})"
    return raw


def benchmark_copy(mirror: Path, name: str, location: str) -> Path:
    """The synthetic stand-in of a benchmark location: `eval/...` paths inside the mirror's eval folder (the
    same path, LLaVA's layout), TextVQA's published image zip as the mirror's copy of it."""
    if location.endswith("train_val_images.zip"):
        return mirror / "benchmarks" / "textvqa" / "train_val_images.zip"
    path = mirror / location if location.startswith("eval/") else mirror / "eval" / name
    if not path.exists():
        raise SystemExit(f"decontaminate.benchmarks.{name} ({location}): no synthetic copy at {path}")
    return path


# ---------------------------------------------------------------------------------------------------------
# LAION-GPT-V's web: a loopback server that answers each URL as its fate says


class LaionServer:
    """HTTP on 127.0.0.1: `/laion/<i>.jpg` answers by `fates[i]` (bench/synth_sources.laion_fates)."""

    def __init__(self, fates: list[str], seed: int):
        from bench.synth_sources import broken, tile_image

        closing = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                try:
                    i = int(self.path.rsplit("/", 1)[-1].split(".")[0])
                    fate = fates[i]
                except (ValueError, IndexError):
                    return self.send(404, b"no such image", "text/plain")
                if fate == "http_404":
                    return self.send(404, b"Not Found", "text/plain")
                if fate == "not_image":
                    return self.send(200, b"<!DOCTYPE html><html><body>This image is no longer available</body></html>",
                                     "text/html; charset=utf-8")
                if fate == "timeout":
                    closing.wait(READ_TIMEOUT * 4)  # the client gives up first
                    self.close_connection = True
                    return
                data = tile_image("laion", i, seed)
                self.send(200, broken(data, "truncated", i) if fate == "corrupt" else data, "image/jpeg")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass  # a client that timed out and hung up

        self.closing = closing
        self.httpd = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------------------
# stages, each in a fresh process (peak RSS of its own, worker processes included)


def _context(work: Path, workers: int):
    from imp_data.core.context import BuildContext
    from imp_data.core.recipe import load_recipe
    from imp_data.fetch.http import DownloadConfig
    from imp_data.fetch.transport import Backoff, Timeouts

    download = DownloadConfig(concurrency=16, per_host=16, timeouts=Timeouts(connect=2.0, read=READ_TIMEOUT),
                              url_deadline_s=8.0, max_attempts=2, backoff=Backoff(base=0.05, cap=0.2), seed=0)
    return BuildContext(recipe=load_recipe(work / "imp_1m_rehearsal.yaml"), data_root=work / "data",
                        workers=workers, progress=False, download=download)


def _timed_render(out: dict):
    """Wrap the render of one source's batch and each dedup/decontamination pass, to time them by source
    (the fill loop renders in rounds; `imp_data` imports these at call time, so the wrappers are seen)."""
    from imp_data.mix import fill, removals, render

    inner_render, inner_rows, inner_removals = render.render_selection, fill.render_rows, removals.find_removals

    def render_selection(selected, **kw):
        t = time.perf_counter()
        table, rendered, reused = inner_render(selected, **kw)
        s = out["sources"].setdefault(selected["source"][0], {"images": 0, "seconds": 0.0, "batches": 0, "chunks": 0})
        s["images"] += table.height
        s["seconds"] += time.perf_counter() - t
        s["batches"] += 1
        s["chunks"] += math.ceil(table.height / render.CHUNK)
        return table, rendered, reused

    def render_rows(*a, **kw):
        out["rounds"] += 1
        return inner_rows(*a, **kw)

    def find_removals(*a, **kw):
        t = time.perf_counter()
        try:
            return inner_removals(*a, **kw)
        finally:
            out["removal_passes"] += 1
            out["removal_seconds"] += time.perf_counter() - t

    render.render_selection, fill.render_rows, removals.find_removals = render_selection, render_rows, find_removals

    def restore() -> None:
        render.render_selection, fill.render_rows, removals.find_removals = inner_render, inner_rows, inner_removals

    return restore


def stage(name: str, arg: str, work: Path, workers: int) -> dict:
    """Run one stage of the build in this process; return what it measured."""
    from imp_data import build as b

    ctx = _context(work, workers)
    t0 = time.perf_counter()
    out: dict = {}
    if name == "normalize":
        counts = b.normalize_source(ctx, arg, b.fetch_source(ctx, arg))
        out = {"records": counts.read, "normalized": counts.normalized}
    elif name == "download":
        summary = b.download_source_images(ctx, arg)
        out = {"records": summary["total"], "by_status": summary["by_status"]}
    elif name == "select":
        summary = b.select_mix(ctx, arg)
        out = {"records": sum(s["selected"] for s in summary.values())}
    elif name == "render":
        out = {"sources": {}, "rounds": 0, "removal_passes": 0, "removal_seconds": 0.0}
        restore = _timed_render(out)
        try:
            out["store_open_s"] = _store_open_times(ctx, arg)
            t0 = time.perf_counter()
            out["records"] = b.render_mix(ctx, arg).height
        finally:
            restore()
    elif name == "dedup":
        out = {"records": b.dedup_mix(ctx, arg).height}
    elif name == "plan":
        out = {"records": b.plan_stage(ctx, arg).height}
    elif name == "shards":
        from imp_data.shards.assemble import write_mix_shards

        out = {"records": 0, **write_mix_shards(ctx, arg)}
    elif name == "finalize":
        stats = b.finalize_mix(ctx, arg)
        b.report_mix(ctx, arg)
        out = {"records": stats["totals"]["taken"]}
    else:
        raise SystemExit(f"unknown stage {name}")
    out["seconds"] = round(time.perf_counter() - t0, 2)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out["peak_rss_mib"] = round(max(own, workers_peak) / 1024, 1)
    return out


def _store_open_times(ctx, mix: str) -> dict:
    """Seconds to open each source's image store once (zip directories parsed): the render stage opens
    one per chunk of `imp_data.mix.render.CHUNK` images, so this cost recurs chunk after chunk."""
    from imp_data.fetch.image_store import image_store_factory

    times = {}
    for source in ctx.sources_of(mix):
        t = time.perf_counter()
        store = image_store_factory(ctx, source)()
        for root in ctx.source(source).images:  # a name no root has: every index is built (`**/` by file name too)
            store.exists(f"{root.prefix}__rehearsal_probe__.jpg")
        store.close()
        times[source] = round(time.perf_counter() - t, 3)
    return times


def run_stage(name: str, arg: str, work: Path, workers: int, inline: bool) -> dict:
    if inline:
        return stage(name, arg, work, workers)
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--arg", arg, "--work", str(work),
                           "--workers", str(workers)], capture_output=True, text=True, check=False,
                          env={**os.environ, "IMP_DATA_PROGRESS": "0"})
    if proc.returncode:
        raise SystemExit(f"stage {name} {arg} failed:\n{proc.stderr[-5000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------
# checks: every loss against the ledger


def audit(work: Path, ledger: dict, fates: list[str], workers: int, mix: str) -> dict:
    """Per source: target vs taken, losses by reason, and each injected kind found where it was put."""
    import polars as pl

    from imp_data.audit.quality import contamination_left, end_counts, reject_rate
    from imp_data.audit.stats import load_stats
    from imp_data.mix.fill import activated

    ctx = _context(work, workers)
    lay = ctx.layout
    stats = load_stats(lay.mix(mix))
    spec = ctx.recipe.mixes[mix]
    active = activated(lay, mix, ["id", "source", "image"])
    renders = pl.read_parquet(lay.renders(mix), columns=["id", "reason"]).filter(pl.col("reason").is_not_null())
    removals = pl.read_parquet(lay.removals(mix), columns=["id", "reason"])
    contamination = pl.read_parquet(lay.mix(mix) / "contamination.parquet")
    fill = pl.read_parquet(lay.fill(mix), columns=["source"]) if lay.fill(mix).is_file() else None
    lost = renders.join(active, on="id")
    ends = {r["source"]: r for r in end_counts(ctx, mix)}
    drop = spec.decontaminate.drop and bool(spec.decontaminate.benchmarks)
    planted = {p["image"]: p for p in ledger["planted"]  # copies the recipe's benchmarks hold, near enough to match
               if p["benchmark"] in spec.decontaminate.benchmarks and p["distance"] <= spec.decontaminate.max_distance}
    url_fate = {f"laion/{i}.jpg": fate for i, fate in enumerate(fates)}
    rows, problems = [], []
    for source, share in spec.sources.items():
        s = stats["sources"][source]
        mine = active.filter(pl.col("source") == source)
        images = set(mine["image"].drop_nulls().to_list())
        if source == "laion_gpt4v":
            fate = {im: url_fate.get(im.split("/", 3)[-1], "ok") for im in images}
            corrupt = {im for im, f in fate.items() if f == "corrupt"}
            dead = {im for im, f in fate.items() if f not in ("ok", "corrupt")}
        else:
            corrupt, dead = set(ledger["corrupt"].get(source, {})) & images, set()
        rejected = lost.filter(pl.col("id").is_in(mine["id"].implode()))
        got = dict(rejected.group_by("reason").len().rows())
        bad_images = set(rejected.join(mine, on="id").filter(pl.col("reason") != "image_missing")["image"].to_list())
        missing = set(rejected.join(mine, on="id").filter(pl.col("reason") == "image_missing")["image"].to_list())
        if bad_images != corrupt:
            problems.append(f"{source}: image rejects {len(bad_images)} != corrupt images activated {len(corrupt)}")
        if missing != dead:
            problems.append(f"{source}: image_missing {len(missing)} != dead links activated {len(dead)}")
        matched = set(contamination.join(mine, on="id")["image"].to_list()) if contamination.height else set()
        expect_match = {im for im in planted if im in images and im not in corrupt}
        if matched != expect_match:
            problems.append(f"{source}: benchmark matches {len(matched)} != planted copies activated "
                            f"{len(expect_match)} (unexpected: {sorted(matched - expect_match)[:3]}, "
                            f"missed: {sorted(expect_match - matched)[:3]})")
        removed = dict(removals.join(mine, on="id").group_by("reason").len().rows())
        rule_drops = {k: v for k, v in s["dropped"].items() if k != "not_sampled" and k not in removed}
        usable = s["available"] - sum(rule_drops.values())  # eligible after the recipe's rules...
        if share.take != "all":  # ...of which these could not be used: corrupt, dead, planted (when dropped)
            pool = _eligible_images(ctx, source, mix)
            unusable = _unusable(source, pool, ledger, url_fate, planted if drop else {})
            usable -= unusable
        else:
            usable -= len(corrupt) + len(dead) + (len(expect_match) if drop else 0)
        target = share.take
        expected = usable if target == "all" else min(target, usable)
        exact = s["taken"] == expected and ends[source]["ok"]
        if not exact:
            problems.append(f"{source}: taken {s['taken']}, expected {expected} (target {target}, usable {usable}); "
                            f"end-count check: {ends[source]['why']}")
        rows.append({"source": source, "target": target, "usable": usable, "taken": s["taken"], "exact": exact,
                     "normalize_rejects": {k: v for k, v in s["rejected"].items() if k not in got},
                     "render_rejects": got, "removed": removed,
                     "replaced": fill.filter(pl.col("source") == source).height if fill is not None else 0,
                     "corrupt_activated": len(corrupt), "dead_activated": len(dead),
                     "planted_activated": len(expect_match),
                     "downloads": (s.get("downloads") or {}).get("by_status"), "why": ends[source]["why"]})
    kinds = {
        "duplicate_record": sum(r["normalize_rejects"].get("duplicate_record", 0) for r in rows),
        "image_truncated": sum(r["render_rejects"].get("image_truncated", 0) for r in rows),
        "image_undecodable": sum(r["render_rejects"].get("image_undecodable", 0) for r in rows),
        "image_missing (dead link)": sum(r["render_rejects"].get("image_missing", 0) for r in rows),
        "download http_404": sum((r["downloads"] or {}).get("http_404", 0) for r in rows),
        "download timeout": sum((r["downloads"] or {}).get("timeout", 0) for r in rows),
        "download not_image": sum((r["downloads"] or {}).get("not_image", 0) for r in rows),
        "benchmark match": contamination["id"].n_unique() if contamination.height else 0,
    }
    problems += [f"injected kind {k!r} never seen" for k, v in kinds.items() if not v]
    quality = {"reject_rate": reject_rate(ctx, mix), "contamination": contamination_left(ctx, mix)}
    return {"rows": rows, "kinds": kinds, "problems": problems, "quality": quality,
            "contamination": stats.get("contamination"), "totals": stats["totals"],
            "policy": "drop" if drop else "report only"}


def _eligible_images(ctx, source: str, mix: str) -> set:
    """Images of the source's records that the selection could draw (taken, reserve)."""
    import polars as pl

    frames = [pl.read_parquet(p, columns=["source", "image"])
              for p in (ctx.layout.selected(mix), ctx.layout.reserve(mix)) if p.is_file()]
    return set(pl.concat(frames).filter(pl.col("source") == source)["image"].drop_nulls().to_list())


def _unusable(source: str, pool: set, ledger: dict, url_fate: dict, planted: dict) -> int:
    if source == "laion_gpt4v":
        return sum(1 for im in pool if url_fate.get(im.split("/", 3)[-1], "ok") != "ok")
    bad = set(ledger["corrupt"].get(source, {})) | {im for im in planted if planted[im]["source"] == source}
    return len(bad & pool)


# ---------------------------------------------------------------------------------------------------------
# projection


def calibrate(resolution: int, quality: int, seed: int, scratch: Path) -> dict:
    """Per-image render cost here of a synthetic image (at the rehearsal's resolution) and of a real-sized
    photo (~150 KB JPEG, 800x600, rendered at 384 px), same process, alternating; and the SQLite commit
    that a folder image's first render costs (the file-hash cache), on this disk."""
    import io
    import statistics
    import tempfile

    import numpy as np
    from PIL import Image

    from bench.synth_sources import tile_image
    from imp_data.core.fingerprint import FileHashes
    from imp_data.core.io import atomic_path
    from imp_data.images import render_image

    photos = []
    try:
        import skimage.data as sk

        for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "stereo_motorcycle"):
            photos.append(Image.fromarray(getattr(sk, name)()).convert("RGB").resize((800, 600), Image.BICUBIC))
    except Exception:  # noqa: BLE001 - no scikit-image: noisy gradients of the same size
        rng = np.random.default_rng(seed)
        for _ in range(6):
            base = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)
            arr = (np.asarray(Image.fromarray(base).resize((800, 600), Image.BICUBIC), float)
                   + rng.normal(0, 14, (600, 800, 3)))
            photos.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    real = []
    for img in photos:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=92)
        real.append(buf.getvalue())
    synth = [tile_image("calibration", k, seed) for k in range(200)]
    render_image(real[0], resolution=384, quality=quality)  # warm-up (torch import)
    t_real, t_syn, out_kb = [], [], []
    for _ in range(3):
        t = time.perf_counter()
        for data in real:
            out_kb.append(len(render_image(data, resolution=384, quality=quality).jpeg) / 1024)
        t_real.append((time.perf_counter() - t) / len(real))
        t = time.perf_counter()
        for data in synth:
            render_image(data, resolution=resolution, quality=quality)
        t_syn.append((time.perf_counter() - t) / len(synth))
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:  # the data root's disk
        files = []
        for k in range(300):
            (Path(tmp) / f"{k}.jpg").write_bytes(synth[k % len(synth)] + bytes([k % 256]))
            files.append(Path(tmp) / f"{k}.jpg")
        hashes = FileHashes(Path(tmp) / "hashes.sqlite")
        t = time.perf_counter()
        for f in files:
            hashes.sha256(f)
        commit = (time.perf_counter() - t) / len(files)
        t = time.perf_counter()
        for f in files[:100]:
            with atomic_path(f.with_suffix(".json")) as out:
                out.write_bytes(b"{}")
        fsync = (time.perf_counter() - t) / 100
    return {"real_s": statistics.median(t_real), "synth_s": statistics.median(t_syn),
            "real_kb": round(sum(len(d) for d in real) / len(real) / 1024), "render_kb": round(statistics.mean(out_kb)),
            "commit_s": commit, "atomic_write_s": fsync}


def project(stages: dict, audit_result: dict, calib: dict, fraction: float, workers: int) -> list[dict]:
    """The real build (full counts, real images) on 16 cores, stage by stage, from what was measured here."""
    P = PROJECTION
    cores = P["cores"] * P["efficiency"]
    scale = 1 / fraction
    rows = []

    def add(stage, measured, projected, scales, model, here_full=None):
        rows.append({"stage": stage, "measured_s": round(measured, 1), "projected_s": round(projected, 1),
                     "here_full_s": round(measured * scale if here_full is None else here_full, 1),
                     "cores": scales, "model": model})

    norm = sum(v["seconds"] for k, v in stages.items() if k.startswith("normalize "))
    add("normalize (all sources)", norm, norm * scale, "no",
        "one process per source, one after another; records as long as the synthetic ones (real ones are longer)")
    dl = next((v for k, v in stages.items() if k.startswith("download ")), None)
    if dl:
        urls = 12_356
        add("download LAION-GPT-V", dl["seconds"], urls * P["url_latency_s"] / P["per_host"], "no",
            f"network: {urls:,} URLs x {P['url_latency_s']} s / {P['per_host']} per host in flight (default "
            "DownloadConfig; most links share one CDN host); dead links' 20 s timeouts x 3 attempts come on top")
    r = stages["render"]
    images = sum(s["images"] for s in r["sources"].values())  # every render of every fill round
    full_images = images * scale
    members = {s: _synthetic_members(s, fraction) for s in r["store_open_s"]}
    zipped = [s for s in members if members[s]]
    pooled = sum(r["store_open_s"][s] for s in zipped) / max(1, sum(members[s] for s in zipped))
    opens_here = sum(s["chunks"] * r["store_open_s"][k] for k, s in r["sources"].items())
    opens_full = 0.0
    for source, s in r["sources"].items():
        if source in REAL_MEMBERS:  # each render job of CHUNK images reopens the source's archives
            per_member = r["store_open_s"][source] / members[source] if members[source] else pooled
            opens_full += math.ceil(s["images"] * scale / CHUNK) * REAL_MEMBERS[source] * per_member
    busy = (r["seconds"] - r["removal_seconds"]) * workers
    overhead = max(0.0, busy - images * calib["synth_s"] - opens_here) / max(1, images)
    io_s = full_images * P["real_kb"] / 1024 / P["disk_mb_s"]
    projected = (max((full_images * (calib["real_s"] + overhead) + opens_full) / cores, io_s)
                 + r["removal_seconds"] * scale)
    here_full = (full_images * (calib["synth_s"] + overhead) + opens_here * scale ** 2) / workers \
        + r["removal_seconds"] * scale  # this machine: chunks and archive sizes both grow with the fraction
    add("render + fill (+ decontamination passes)", r["seconds"], projected, "yes",
        f"{full_images:,.0f} images x ({calib['real_s'] * 1e3:.1f} ms to render a "
        f"~{calib['real_kb']} KB photo at 384 px + "
        f"{overhead * 1e3:.1f} ms per-image I/O measured here: cache writes with 2 fsyncs, hash-cache commit) + "
        f"{opens_full / 60:,.0f} CPU-min reopening archives ({CHUNK}-image jobs x published member counts), over "
        f"{P['cores']} cores x {P['efficiency']}; {r['removal_passes']} removal passes x {scale:.0f}", here_full)
    for name in ("select", "dedup", "plan", "finalize"):
        add(name, stages[name]["seconds"], stages[name]["seconds"] * scale, "no", "one process, linear in samples")
    sh = stages["shards"]
    shard_cpu = sh["seconds"] * workers * scale / cores
    shard_io = audit_result["totals"]["taken"] * scale * calib["render_kb"] / 1024 / P["disk_mb_s"]
    add("shards", sh["seconds"], max(shard_cpu, shard_io), "yes",
        f"CPU as measured x{scale:.0f} over {P['cores']} cores; or writing ~{calib['render_kb']} KB renders at "
        f"{P['disk_mb_s']} MB/s, whichever is longer")
    return rows


def _synthetic_members(source: str, fraction: float) -> int:
    from bench.synth_sources import image_sets, rehearsal_counts

    return sum(s.count for s in image_sets(rehearsal_counts(fraction)) if s.source == source and s.kind != "dir")


# ---------------------------------------------------------------------------------------------------------
# the whole rehearsal


def rehearse(work: Path, fraction: float = 1.0, workers: int = 2, resolution: int = 32, seed: int = 0,
             inline: bool = False, mixes: tuple[str, ...] = (MIX,), say=print) -> dict:
    """Mirror (reused when it matches), recipe, fresh data root, every stage, audit, projection."""
    import yaml

    from bench.synth_sources import Duplicates, laion_fates, write_laion, write_rehearsal_mirror
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
