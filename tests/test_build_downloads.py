"""A URL-only source end to end: LAION-GPT-V rows whose links point at a loopback image server are
normalised, downloaded by the URL downloader (ok / 404 / HTML / truncated), rendered from what came
back, and the mix report shows the success rate by reason.

Run: pytest tests/test_build_downloads.py
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from imp_data.build import build
from imp_data.core.context import BuildContext
from imp_data.core.recipe import parse_recipe
from tests.servers.image_server import ImageServer


def test_laion_urls_downloaded_rendered_and_reported(tmp_path):
    with ImageServer() as server:
        links = [f"{server.url}/img/a{i}.jpg" for i in range(5)] + [
            f"{server.url}/status/404", f"{server.url}/html", f"{server.url}/truncated"]
        rows = [{"link": link, "caption": f"A picture number {i}.", "message_id": str(1000 + i),
                 "timestamp": "2023-11-01", "image": None} for i, link in enumerate(links)]
        src = tmp_path / "laion" / "data"
        src.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([
            ("link", pa.string()), ("caption", pa.string()), ("message_id", pa.string()),
            ("timestamp", pa.string()), ("image", pa.null())])), src / "train-00000-of-00001.parquet")
        recipe = parse_recipe({
            "name": "urls", "render": {"resolution": 32}, "shard_size": 4, "max_reject_rate": 1.0,
            "sources": {"laion_gpt4v": {"adapter": "laion_gpt4v", "location": str(tmp_path / "laion"),
                                        "download_images": True,
                                        "images": [{"location": "raw/laion_gpt4v/images"}]}},
            "mixes": {"m": {"stage": 2, "sources": {"laion_gpt4v": {"take": "all"}}}},
        })
        ctx = BuildContext(recipe=recipe, data_root=tmp_path / "data", progress=False)
        stats = build(ctx)["mixes"]["m"]
    entry = stats["sources"]["laion_gpt4v"]
    assert entry["taken"] == 5
    assert entry["rejected"] == {"image_missing": 3}
    downloads = entry["downloads"]
    assert downloads["total"] == 8 and downloads["ok"] == 5
    assert set(downloads["by_status"]) == {"ok", "http_404", "not_image", "truncated"}
    report = ctx.layout.report("m").read_text()
    assert "## URL downloads" in report and "62.5%" in report
    saved = json.loads(ctx.layout.stats("m").read_text())
    assert saved["sources"]["laion_gpt4v"]["downloads"]["success_rate"] == 0.625
