"""The rehearsal's build side (bench/rehearsal.py runs it): the recipe rewritten onto the synthetic
mirror, LAION-GPT-V's loopback web with each URL's fate, and each build stage run in a fresh process with
its time and peak RSS."""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ROOT / "bench" / "rehearsal.py"  # a stage's child process runs it with --child
CHUNK = 1024  # imp_data.mix.render.CHUNK: images per render job, each job opening the source's image store
READ_TIMEOUT = 1.0


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
        raise SystemExit(f"bench/synth_images.py writes no images for source(s) {unknown}: extend it first")
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
    """HTTP on 127.0.0.1: `/laion/<i>.jpg` answers by `fates[i]` (bench/synth_images.laion_fates)."""

    def __init__(self, fates: list[str], seed: int):
        from bench.synth_images import broken, tile_image

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


def stage_context(work: Path, workers: int):
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

    ctx = stage_context(work, workers)
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
    """Seconds to open each source's image store once (zip directories parsed). The render stage's worker
    processes keep their stores open across jobs (imp_data.mix.render), so this is paid once per worker
    process and source, not per chunk of `imp_data.mix.render.CHUNK` images."""
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
    proc = subprocess.run([sys.executable, str(ENTRY), "--child", name, "--arg", arg, "--work", str(work),
                           "--workers", str(workers)], capture_output=True, text=True, check=False,
                          env={**os.environ, "IMP_DATA_PROGRESS": "0"})
    if proc.returncode:
        raise SystemExit(f"stage {name} {arg} failed:\n{proc.stderr[-5000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
