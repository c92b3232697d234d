"""LAION-GPT-V adapter: the published parquet shape (link, caption, message_id, timestamp, image=null)
becomes single-turn caption conversations whose prompt is a keyed hash of message_id — the same for a
row whatever the row order or batch size; bad rows are problems, bad files one-line errors.

Run: pytest tests/test_sources_laion.py
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imp_data.core.errors import SourceFormatError
from imp_data.core.source_options import CAPTION_PROMPTS
from imp_data.sources import laion_gpt4v
from imp_data.sources.base import Candidate, Problem
from imp_data.sources.laion_gpt4v import pick_prompt
from imp_data.sources.registry import get_adapter

ROWS = [
    ("https://example.org/a.jpg", "A red bicycle leans on a wall.", "msg-0", "2023-11-01T12:00:00Z"),
    ("https://example.org/b.jpg", "Two cats sleep on a sofa.", "msg-1", "2023-11-02T12:00:00Z"),
    ("https://example.org/c.jpg", "   ", "msg-2", "2023-11-03T12:00:00Z"),
    (None, "A lighthouse.", "msg-3", None),
    ("https://example.org/e.jpg", "A bowl of ramen.", None, None),
]


def write_parquet(path: Path, rows, *, drop: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = dict(zip(["link", "caption", "message_id", "timestamp"], map(list, zip(*rows))))
    table = pa.table({**{k: pa.array(v, pa.string()) for k, v in cols.items()}, "image": pa.nulls(len(rows))})
    pq.write_table(table.drop([drop]) if drop else table, path)


def read(root: Path, **options) -> list:
    a = get_adapter("laion_gpt4v")
    return list(a.read(root, a.default_files, a.parse_options(options)))


def test_rows_become_caption_conversations(tmp_path):
    write_parquet(tmp_path / "data" / "train-00000-of-00001.parquet", ROWS)
    out = read(tmp_path)
    where = "data/train-00000-of-00001.parquet row"
    assert out[0] == Candidate("msg-0", "https://example.org/a.jpg", [
        {"from": "human", "value": "<image>\nPlease provide a vivid description of the image."},
        {"from": "gpt", "value": "A red bicycle leans on a wall."},
    ], {"timestamp": "2023-11-01T12:00:00Z"}, f"{where} 0")
    assert out[1].conversations[0]["value"] == "<image>\nCould you please express the image in a descriptive format?"
    assert out[2:] == [
        Problem("msg-2", "empty_answer", f"{where} 2: empty caption"),
        Problem("msg-3", "missing_field", f"{where} 3: no link"),
        Problem("@data/train-00000-of-00001.parquet:4", "missing_field", f"{where} 4: no message_id"),
    ]


def test_prompt_depends_on_message_id_only(tmp_path, monkeypatch):
    rows = [(f"https://example.org/{i}.jpg", f"Caption {i}.", f"m{i}", None) for i in range(40)]
    write_parquet(tmp_path / "data" / "train-00000-of-00002.parquet", rows[:25])
    write_parquet(tmp_path / "data" / "train-00001-of-00002.parquet", rows[25:])
    first = {c.source_id: c.conversations[0]["value"] for c in read(tmp_path)}
    other = tmp_path / "reordered"
    write_parquet(other / "data" / "train-00000-of-00001.parquet", rows[::-1])
    monkeypatch.setattr(laion_gpt4v, "_BATCH", 3)
    again = {c.source_id: c.conversations[0]["value"] for c in read(other)}
    assert first == again and len(first) == 40
    used = {v.removeprefix("<image>\n") for v in first.values()}
    assert used <= set(CAPTION_PROMPTS) and len(used) >= 8  # 40 rows spread over the 15-prompt pool
    assert read(other, prompt_key="other-key") != read(other)


def test_custom_prompt_pool():
    assert pick_prompt("anything", ["Only prompt."]) == "Only prompt."
    with pytest.raises(ValueError):
        get_adapter("laion_gpt4v").parse_options({"prompts": []})


def test_bad_files_are_one_line_errors(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-0.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceFormatError, match=r"train-0\.parquet: not a readable parquet file"):
        read(tmp_path)
    (tmp_path / "data" / "train-0.parquet").unlink()
    write_parquet(tmp_path / "data" / "train-1.parquet", ROWS, drop="caption")
    with pytest.raises(SourceFormatError, match=r"train-1\.parquet: missing column\(s\) caption"):
        read(tmp_path)


def test_timestamp_column_is_optional(tmp_path):
    write_parquet(tmp_path / "data" / "train-0.parquet", ROWS[:1], drop="timestamp")
    assert read(tmp_path)[0].meta == {"timestamp": None}
