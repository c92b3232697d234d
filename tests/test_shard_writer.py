"""Shard writer: byte-identical output for the same members, member data offsets recorded correctly,
plain `webdataset.WebDataset` reads it back, a complete shard is recognised and a tampered one is not.

Run: pytest tests/test_shard_writer.py
"""

import io
import json
import random
import tarfile

import webdataset as wds
from PIL import Image

from imp_data.core.io import dumps_canonical
from imp_data.shards.reader import iter_tar_samples
from imp_data.shards.writer import Member, shard_fingerprint, shard_is_complete, write_shard


def members(n=5):
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(buf, "JPEG", quality=90)
        key = f"{i:09d}"
        obj = {"key": key, "id": f"s/{i}", "conversations": [{"from": "human", "value": "hi"}]}
        out.append(Member(key, dumps_canonical(obj).encode(), buf.getvalue() if i % 2 == 0 else None,
                          {"position": i, "id": f"s/{i}", "source": "s", "source_id": str(i)}))
    return out


def test_deterministic_and_offsets(tmp_path):
    a = write_shard(tmp_path / "a" / "m-000000.tar", tmp_path / "a" / "p.parquet", 0, members())
    b = write_shard(tmp_path / "b" / "m-000000.tar", tmp_path / "b" / "p.parquet", 0, members())
    tar_a = (tmp_path / "a" / "m-000000.tar").read_bytes()
    assert tar_a == (tmp_path / "b" / "m-000000.tar").read_bytes()
    assert [r["shard_sha256"] for r in a] == [r["shard_sha256"] for r in b]
    for row, m in zip(a, members()):
        assert tar_a[row["json_offset"]: row["json_offset"] + row["json_size"]] == m.json_bytes
        if m.jpg_bytes is None:
            assert row["jpg_offset"] is None
        else:
            assert tar_a[row["jpg_offset"]: row["jpg_offset"] + row["jpg_size"]] == m.jpg_bytes


def test_webdataset_reads_back_and_resume_check(tmp_path):
    tar = tmp_path / "m-000000.tar"
    part = tmp_path / "p.parquet"
    made = members()
    fingerprint = shard_fingerprint(made, {"mix": "m"}, [None] * len(made))
    write_shard(tar, part, 0, made, fingerprint)
    got = list(wds.WebDataset(str(tar), shardshuffle=False))
    assert [s["__key__"] for s in got] == [f"{i:09d}" for i in range(5)]
    assert json.loads(got[0]["json"])["id"] == "s/0" and "jpg" in got[0] and "jpg" not in got[1]
    assert [k for k, _, _ in iter_tar_samples(tar)] == [f"{i:09d}" for i in range(5)]
    assert shard_is_complete(tar, part, fingerprint)
    assert not shard_is_complete(tar, part, shard_fingerprint(made[:4], {"mix": "m"}, [None] * 4))
    edited = [Member(m.key, m.json_bytes.replace(b"s/0", b"s/9"), m.jpg_bytes, m.row) for m in made]
    assert not shard_is_complete(tar, part, shard_fingerprint(edited, {"mix": "m"}, [None] * 5)), \
        "one member's new text must rewrite the shard"
    assert not shard_is_complete(tar, part, shard_fingerprint(made, {"mix": "m"}, ["k"] + [None] * 4)), \
        "a new render of one image must rewrite the shard"
    data = bytearray(tar.read_bytes())
    data[600] ^= 0xFF
    tar.write_bytes(bytes(data))
    assert not shard_is_complete(tar, part, fingerprint), "a tampered shard must be rebuilt"
    part.unlink()
    assert not shard_is_complete(tar, part, fingerprint)


def reference_tar(members: list[Member]) -> bytes:
    """The same members written by the standard library's tarfile with our fixed header fields."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for m in members:
            for name, data in ((f"{m.key}.json", m.json_bytes), (f"{m.key}.jpg", m.jpg_bytes)):
                if data is None:
                    continue
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
                    len(data), 0, 0o644, 0, 0, "", "")
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_fast_headers_are_tarfiles_bytes(tmp_path):
    """The templated ustar headers equal tarfile's, for block-aligned, empty, odd-sized members, short
    and 100-byte names, and names long enough to need tarfile's prefix split (the fallback)."""
    rng = random.Random(3)
    keys = ["a", "x" * 95, "y" * 120 + "/" + "z" * 40] + [f"{i:09d}" for i in range(40)]
    members = []
    for i, key in enumerate(keys):
        size = [0, 1, 511, 512, 513, 10240][i % 6] + rng.randrange(3)
        members.append(Member(key, bytes(rng.randrange(256) for _ in range(size)),
                              None if i % 3 == 0 else b"\xff\xd8" * (i * 37), {}))
    write_shard(tmp_path / "s.tar", tmp_path / "s.parquet", 0, members)
    assert (tmp_path / "s.tar").read_bytes() == reference_tar(members)
    with tarfile.open(tmp_path / "s.tar") as tar:
        assert [n.name for n in tar.getmembers()][:3] == ["a.json", "x" * 95 + ".json", "x" * 95 + ".jpg"]
