"""The rehearsal's checks and projection (bench/rehearsal.py runs them): every loss found against the
ledger of what was injected, the cost of real-sized images measured, and the real build projected."""

from __future__ import annotations

import math
import time
from pathlib import Path

from bench.rehearsal_build import CHUNK, stage_context

# Published archive sizes (members) behind each source's image roots, for the projection of the per-chunk
# store opening: COCO train2017 118,287; GQA 148,854; TextVQA train_val 28,408; VG 64,346 + 43,903;
# LLaVA-Pretrain 558,128; ShareGPT-4V web zips ~2K; ALLaVA-LAION 505,588 (`**/`); Vision-Flan 191-task ~191K.
REAL_MEMBERS = {"llava_665k": 403_798, "sharegpt4v": 678_413, "allava": 696_588}
PROJECTION = {"cores": 16, "efficiency": 0.8, "real_kb": 150, "disk_mb_s": 1000, "url_latency_s": 0.5,
              "per_host": 4}


# ---------------------------------------------------------------------------------------------------------
# checks: every loss against the ledger


def audit(work: Path, ledger: dict, fates: list[str], workers: int, mix: str) -> dict:
    """Per source: target vs taken, losses by reason, and each injected kind found where it was put."""
    import polars as pl

    from imp_data.audit.quality import contamination_left, end_counts, reject_rate
    from imp_data.audit.stats import load_stats
    from imp_data.mix.fill import activated

    ctx = stage_context(work, workers)
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

    from bench.synth_images import tile_image
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
    # each worker process opens a source's store once and keeps it for all its jobs of CHUNK images
    opens_here = sum(min(s["chunks"], workers) * r["store_open_s"][k] for k, s in r["sources"].items())
    opens_full = 0.0
    for source, s in r["sources"].items():
        if source in REAL_MEMBERS:  # the published archives behind it, opened once per process
            per_member = r["store_open_s"][source] / members[source] if members[source] else pooled
            processes = min(math.ceil(s["images"] * scale / CHUNK), P["cores"])
            opens_full += processes * REAL_MEMBERS[source] * per_member
    busy = (r["seconds"] - r["removal_seconds"]) * workers
    overhead = max(0.0, busy - images * calib["synth_s"] - opens_here) / max(1, images)
    io_s = full_images * P["real_kb"] / 1024 / P["disk_mb_s"]
    projected = (max((full_images * (calib["real_s"] + overhead) + opens_full) / cores, io_s)
                 + r["removal_seconds"] * scale)
    here_full = (full_images * (calib["synth_s"] + overhead) + opens_here * scale) / workers \
        + r["removal_seconds"] * scale  # this machine: the same opens, of archives `scale` times larger
    add("render + fill (+ decontamination passes)", r["seconds"], projected, "yes",
        f"{full_images:,.0f} images x ({calib['real_s'] * 1e3:.1f} ms to render a "
        f"~{calib['real_kb']} KB photo at 384 px + "
        f"{overhead * 1e3:.1f} ms per-image I/O measured here: rename-atomic cache writes, hash-cache commit) + "
        f"{opens_full / 60:,.1f} CPU-min opening archives (once per worker process x published member counts), over "
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
    from bench.synth_images import image_sets, rehearsal_counts

    return sum(s.count for s in image_sets(rehearsal_counts(fraction)) if s.source == source and s.kind != "dir")
