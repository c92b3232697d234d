"""`imp-data publish MIX hf://datasets/ORG/NAME[@branch]` against the loopback Hub (issue 19): every file lands
with its bytes, the card with the shards and last; a second run uploads nothing and commits nothing; a
publish refused midway resumes without sending a committed file or an uploaded blob again; shards a
smaller rebuild lacks are removed, other files in the repo kept.

huggingface_hub takes its plain-LFS path here (`HF_HUB_DISABLE_XET`): the loopback server does not emulate
Xet's chunk store, and the Hub accepts both.

Run: pytest tests/test_publish_hub.py
"""

from __future__ import annotations

import hashlib
import json

import pytest

from imp_data.audit.card import render_card, split_card
from imp_data.cli import main
from imp_data.core.errors import ImpDataError
from imp_data.publish.hub import parse_hub_url, publish_to_hub
from tests.servers.hub_server import HubServer

MIX = "demo_stage2"
REPO = "imp/demo-stage2"
TOKEN = "hf_loopback_writer"


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with HubServer(lfs_threshold=2048, token=TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        # huggingface_hub and datasets read the endpoint at import (URLs, the user-agent's registry): here too
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", server.url)
        monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield server


@pytest.fixture(scope="module")
def mix_dir(demo_build):
    return demo_build[0] / "mixes" / MIX


def expected(mix_dir, branch=None) -> dict[str, bytes]:
    """What the repo must hold: the mix's files, byte for byte, and the card rendered for this repo."""
    stats = json.loads((mix_dir / "stats.json").read_text())
    tars = {f"shards/{p.name}" for p in (mix_dir / "shards").glob("*.tar")}
    names = tars | {"README.md", "index.parquet", "stats.json", "report.md", "rejects.parquet", "plan.parquet",
                    "shards/index.wids.json"} | {f"charts/{p.name}" for p in (mix_dir / "charts").glob("*.png")}
    assert len(tars) == stats["totals"]["shards"] > 1
    files = {name: (mix_dir / name).read_bytes() for name in names}
    files["README.md"] = render_card(stats, repo_id=REPO, revision=branch).encode()
    return files


def head(hub, branch="main") -> dict[str, bytes]:
    repo = hub.repos[("dataset", REPO)]
    return dict(repo.commits[repo.branches[branch]])


def test_publish_lands_every_file_and_a_rerun_sends_nothing(hub, mix_dir, capsys):
    assert main(["publish", str(mix_dir), f"hf://datasets/{REPO}", "--files-per-commit", "4"]) == 0
    want = expected(mix_dir)
    got = head(hub)
    assert got.pop(".gitattributes")  # the Hub's own first commit
    assert got == want
    summaries = [c[2] for c in hub.commit_log]
    assert len(summaries) > 3 and all(f"({i}/{len(summaries)})" in s for i, s in enumerate(summaries, 1))
    first = hub.repos[("dataset", REPO)].commits[hub.commit_log[-2][3]]
    assert "README.md" not in first and "shards/index.wids.json" not in first  # the card comes last
    lfs = {hashlib.sha256(d).hexdigest() for d in want.values() if hub.is_lfs(d)}
    puts = {r.path.rsplit("/", 1)[-1] for r in hub.cdn.seen("PUT")}
    assert puts == lfs and len(hub.cdn.seen("PUT")) == len(lfs)  # each blob sent once
    published, local = split_card(want["README.md"].decode()), split_card((mix_dir / "README.md").read_text())
    assert published[0] == local[0] and f'load_dataset("{REPO}", split="train")' in published[1]
    assert "0 unchanged" in capsys.readouterr().out

    hub.clear()
    commits = len(hub.commit_log)
    assert main(["publish", str(mix_dir), f"hf://datasets/{REPO}"]) == 0
    assert f"0 uploaded, {len(want)} unchanged, 0 removed in 0 commit(s)" in capsys.readouterr().out
    assert len(hub.commit_log) == commits
    assert not hub.cdn.seen("PUT") and not hub.seen("POST", "/commit/") and not hub.seen("POST", "/preupload/")


def test_refused_commit_then_resume(hub, mix_dir):
    hub.refuse_commit(after=1)
    with pytest.raises(ImpDataError, match=r"HTTP 500.*2 file\(s\) were committed — rerun the same command"):
        publish_to_hub(mix_dir, f"hf://datasets/{REPO}", files_per_commit=2)
    landed = head(hub)
    assert len(landed) == 1 + 2 and "README.md" not in landed  # .gitattributes + the first commit only
    sent = [r.path.rsplit("/", 1)[-1] for r in hub.cdn.seen("PUT")]

    counts = publish_to_hub(mix_dir, f"hf://datasets/{REPO}", files_per_commit=2)
    want = expected(mix_dir)
    assert counts["uploaded"] == len(want) - 2 and counts["skipped"] == 2
    got = head(hub)
    assert got.pop(".gitattributes") and got == want
    resumed = [r.path.rsplit("/", 1)[-1] for r in hub.cdn.seen("PUT")][len(sent):]
    assert not set(resumed) & set(sent)  # the refused commit's blobs were uploaded before it: not again
    assert len(set(sent + resumed)) == len(sent + resumed) == sum(hub.is_lfs(d) for d in want.values())
    first, *rest = [set(entry[4]) for entry in hub.commit_log]
    assert len(first) == 2 and not first & set().union(*rest)  # no committed file committed again


def test_branch_stale_shards_removed_other_files_kept(hub, mix_dir):
    want = expected(mix_dir, branch="v1")
    stale = "shards/demo_stage2-000099.tar"
    hub.add_commit(REPO, {".gitattributes": b"*.tar filter=lfs\n"})  # an existing repo with a v1 branch
    hub.add_commit(REPO, {".gitattributes": b"*.tar filter=lfs\n", "LICENSE.md": b"mine\n", **want,
                          stale: b"old shard" * 500}, branch="v1")
    main_before = head(hub)
    counts = publish_to_hub(mix_dir, f"hf://datasets/{REPO}@v1")
    assert counts == {"uploaded": 0, "skipped": len(want), "deleted": 1, "commits": 1}
    got = head(hub, "v1")
    assert stale not in got and got.pop("LICENSE.md") == b"mine\n" and got.pop(".gitattributes")
    assert got == want and head(hub) == main_before
    assert 'revision="v1"' in want["README.md"].decode()


def test_new_branch_starts_from_main_and_url_forms(hub, mix_dir):
    publish_to_hub(mix_dir, f"hf://datasets/{REPO}@draft", files_per_commit=50)
    assert set(head(hub)) == {".gitattributes"}  # main untouched
    assert set(head(hub, "draft")) == set(expected(mix_dir, "draft")) | {".gitattributes"}
    assert parse_hub_url("hf://datasets/org/name@dev") == ("org/name", "dev")
    assert parse_hub_url("hf://datasets/org/name.v2/") == ("org/name.v2", None)
    for bad in ("hf://models/org/name", "hf://datasets/name", "hf://datasets/org/name/sub"):
        with pytest.raises(ImpDataError, match="not a Hub dataset URL"):
            parse_hub_url(bad)


def test_datasets_loads_the_published_repo_through_its_card(hub, mix_dir, tmp_path, monkeypatch):
    """The card on the Hub is what `load_dataset(ORG/NAME)` reads: the shard pattern and the features."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", hub.url)
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)  # telemetry
    monkeypatch.setattr(datasets.config, "USE_PARQUET_EXPORT", False)  # the Hub's viewer service: not emulated
    publish_to_hub(mix_dir, f"hf://datasets/{REPO}")
    front, _ = split_card(head(hub)["README.md"].decode())
    ds = datasets.load_dataset(REPO, split="train", cache_dir=str(tmp_path))
    stats = json.loads((mix_dir / "stats.json").read_text())
    assert ds.features == datasets.Features._from_yaml_list(front["dataset_info"]["features"])
    assert ds.num_rows == stats["totals"]["taken"]
    assert {r["json"]["source"] for r in ds} == set(stats["sources"])
    text_only = [r for r in ds if r["json"]["image"] is None]
    assert len(text_only) == stats["distributions"]["text_only"] and all(r["jpg"] is None for r in text_only)
    assert all(isinstance(json.loads(r["json"]["meta"]), dict) for r in ds)


def test_a_card_the_hub_refuses_stops_before_any_upload(hub, mix_dir, monkeypatch):
    import imp_data.audit.card

    monkeypatch.setattr(imp_data.audit.card, "render_card", lambda stats, **kw: "---\nlicense: [unclosed\n---\n")
    with pytest.raises(ImpDataError, match="the Hub refuses the dataset card"):
        publish_to_hub(mix_dir, f"hf://datasets/{REPO}")
    assert not hub.cdn.seen("PUT") and not hub.commit_log
