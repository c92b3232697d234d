"""Every field through every client (issue 19): a built demo mix read with plain `webdataset`, `wids`,
Hugging Face `datasets` (data files, streaming or not, and the mix folder through its dataset card) and the
LLaVA export gives back exactly what the tars hold, text-only samples and per-source `meta` included.

The tars are the truth: read here with `tarfile`, member by member. `meta` is JSON text in KEY.json, so a
typed reader that infers one schema from the first samples cannot drop keys that appear later.

Run: pytest tests/test_clients.py
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from imp_data.audit.card import FEATURES, split_card
from imp_data.core.layout import MixDir

MIX = "demo_stage2"  # text-only samples and several sources' meta


@pytest.fixture(scope="module")
def mix_dir(demo_build) -> Path:
    return demo_build[0] / "mixes" / MIX


@pytest.fixture(scope="module")
def truth(mix_dir) -> dict[str, dict]:
    """key -> {"json": bytes, "jpg": bytes | None, "url": shard path}, in tar order."""
    out = {}
    for tar in sorted((mix_dir / "shards").glob("*.tar")):
        with tarfile.open(tar) as archive:
            for member in archive.getmembers():
                key, ext = member.name.split(".", 1)
                entry = out.setdefault(key, {"json": None, "jpg": None, "url": str(tar)})
                entry[ext] = archive.extractfile(member).read()
    records = [json.loads(e["json"]) for e in out.values()]
    assert {r["image"] is None for r in records} == {True, False}  # the mix has text-only and image samples
    assert len({r["meta"] for r in records}) > 5 and all(isinstance(r["meta"], str) for r in records)
    return out


@pytest.fixture(autouse=True)
def no_download_counts(monkeypatch):
    """`load_dataset("webdataset", ...)` pings a public bucket to count loads (telemetry): off, as offline."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)


def _shards(mix_dir: Path) -> list[str]:
    return [str(p) for p in sorted((mix_dir / "shards").glob("*.tar"))]


def test_webdataset_raw_and_decoded(mix_dir, truth):
    import webdataset as wds

    raw = list(wds.WebDataset(_shards(mix_dir), shardshuffle=False))
    assert [s["__key__"] for s in raw] == list(truth)
    for s in raw:
        assert {"json": s["json"], "jpg": s.get("jpg")} == {k: truth[s["__key__"]][k] for k in ("json", "jpg")}
    # README: text-only samples have no .jpg; ask for it with missing_is_error=False ...
    pairs = list(wds.WebDataset(_shards(mix_dir), shardshuffle=False).decode("pil")
                 .to_tuple("jpg", "json", missing_is_error=False))
    for (jpg, record), (_key, t) in zip(pairs, truth.items(), strict=True):
        assert record == json.loads(t["json"])
        assert (jpg is None) == (t["jpg"] is None)
        if jpg is not None:
            assert jpg.tobytes() == Image.open(io.BytesIO(t["jpg"])).convert("RGB").tobytes()
    # ... the default raises at the first text-only sample, and so does "jpg;none" (';' lists alternatives)
    for spec in ("jpg", "jpg;none"):
        with pytest.raises(ValueError, match="didn't find"):
            list(wds.WebDataset(_shards(mix_dir), shardshuffle=False).to_tuple(spec, "json"))


def test_wids_reads_the_shard_index(mix_dir, truth, tmp_path):
    wids = pytest.importorskip("wids")  # pyproject pins it; webdataset>=1 no longer ships it
    ds = wids.ShardListDataset(str(mix_dir / "shards" / "index.wids.json"), cache_dir=str(tmp_path),
                               transformations=[])
    assert len(ds) == len(truth)
    for i, (key, t) in enumerate(truth.items()):
        s = ds[i]
        assert s["__key__"] == key
        assert s[".json"].read() == t["json"]
        assert (s[".jpg"].read() if ".jpg" in s else None) == t["jpg"]


def _check_rows(rows, truth) -> None:
    rows = list(rows)
    assert [r["__key__"] for r in rows] == list(truth)
    for r in rows:
        t = truth[r["__key__"]]
        assert r["json"] == json.loads(t["json"])  # every field, meta as the same JSON text
        assert r["__url__"] == t["url"]
        assert (r["jpg"] or {}).get("bytes") == t["jpg"]


@pytest.mark.parametrize("streaming", [False, True], ids=["arrow", "streaming"])
def test_datasets_data_files(mix_dir, truth, tmp_path, streaming):
    import datasets

    ds = datasets.load_dataset("webdataset", data_files={"train": _shards(mix_dir)}, split="train",
                               streaming=streaming, cache_dir=str(tmp_path))
    assert ds.features == datasets.Features._from_yaml_list(FEATURES)  # inferred = the card's
    _check_rows(ds.cast_column("jpg", datasets.Image(decode=False)), truth)


def test_datasets_reads_the_mix_folder_through_its_card(mix_dir, truth, tmp_path):
    """`load_dataset(<mix folder>)` takes configs (the shard pattern) and features from README.md: no
    inference, so a mix whose first samples are text-only (or lack some field) still reads whole."""
    import datasets

    front, _ = split_card(MixDir(mix_dir).card.read_text())
    ds = datasets.load_dataset(str(mix_dir), split="train", cache_dir=str(tmp_path))
    assert ds.features == datasets.Features._from_yaml_list(front["dataset_info"]["features"])
    assert ds.num_rows == len(truth)
    _check_rows(ds.cast_column("jpg", datasets.Image(decode=False)), truth)
    text_only = next(r for r in ds if r["json"]["image"] is None)
    assert text_only["jpg"] is None and json.loads(text_only["json"]["meta"]) == \
        json.loads(json.loads(truth[text_only["__key__"]]["json"])["meta"])


def test_llava_export(mix_dir, truth, tmp_path):
    """The LLaVA format carries id, conversations and the image: each equals the tar's."""
    from imp_data.cli import main

    assert main(["export-llava", str(mix_dir), str(tmp_path / "out")]) == 0
    exported = json.loads((tmp_path / "out" / f"{MIX}.json").read_text())
    assert len(exported) == len(truth)
    for rec, (_key, t) in zip(exported, truth.items(), strict=True):
        want = json.loads(t["json"])
        assert {k: rec[k] for k in ("id", "conversations")} == {k: want[k] for k in ("id", "conversations")}
        if t["jpg"] is None:
            assert "image" not in rec
        else:
            assert (tmp_path / "out" / rec["image"]).read_bytes() == t["jpg"]
