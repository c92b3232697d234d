"""Records already in LLaVA's conversation format (665K, LCS-558K, ShareGPT-4V, ALLaVA): one converter.

Converting is picking the fields and moving extras to `meta`; the content is kept exactly as published
(`<image>` placement included — the trainer normalises it, docs/training.md §3.1). A missing id or conversation
is a `Problem`; turn shapes and content rules (roles, empty turns, `<image>` count) are checked once, by
the normaliser, with the schema's rule functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imp_data.core.schema import IMAGE_TOKEN
from imp_data.sources.base import Candidate, Problem, Record, move_image_token_first, native_id
from imp_data.sources.jsoncaps import BadRecord
from imp_data.sources.jsonstream import iter_json_array

KNOWN_KEYS = {"id", "image", "conversations"}


def llava_record(rec: Any, where: str, fallback_id: str, *, move_token: bool = False,
                 file_index: int | None = None) -> Record:
    """One LLaVA-format JSON object -> Candidate, or Problem when its shape is wrong; `file_index` (its
    0-based position in the file) goes into meta when given."""
    if not isinstance(rec, dict):
        if isinstance(rec, BadRecord):  # refused by the reader (too large, too deep, lone surrogate...)
            return Problem(fallback_id, rec.reason, f"{where}: {rec.detail}")
        return Problem(fallback_id, "bad_type", f"{where}: record is a {type(rec).__name__}, not an object")
    get = rec.get
    sid = native_id(get("id"))
    if sid is None:
        value = get("id")
        if value is None or value == "":
            return Problem(fallback_id, "missing_field", f"{where}: no 'id'")
        return Problem(fallback_id, "bad_type", f"{where}: 'id' is a {type(value).__name__}, not a string or int")
    conv = get("conversations")
    if conv is None:
        return Problem(sid, "missing_field", f"{where}: no 'conversations'")
    if type(conv) is not list:
        return Problem(sid, "bad_type", f"{where}: 'conversations' is a {type(conv).__name__}, not a list")
    image = get("image")
    if image is not None and not isinstance(image, str):
        return Problem(sid, "bad_type", f"{where}: 'image' must be a string")
    turns = conv  # turn shapes are checked once, by the normaliser's schema rules
    if move_token and image and conv and isinstance(conv[0], dict):
        value = conv[0].get("value")
        # as LLaVA's preprocess_multimodal, but only a turn holding exactly one token is rewritten: more
        # than one is a schema reject, not something to merge silently
        if isinstance(value, str) and value.count(IMAGE_TOKEN) == 1 and not value.startswith(IMAGE_TOKEN + "\n"):
            turns = [dict(t) if isinstance(t, dict) else t for t in conv]
            turns[0]["value"] = move_image_token_first(value)
    # 'id' and 'conversations' are present here, so a record of only known keys has 2 or 3 of them
    meta = {} if len(rec) == 2 + ("image" in rec) else {k: v for k, v in rec.items() if k not in KNOWN_KEYS}
    if file_index is not None:
        meta["file_index"] = file_index
    return Candidate(sid, image, turns, meta, where)


def read_llava_files(root: Path, files: list[str], *, move_token: bool = False,
                     keep_index: bool = False) -> Iterator[Record]:
    """Stream every record of every file (file order defines the '#N' suffixes of repeated ids).

    `keep_index`: put each record's 0-based position in its file into meta (`file_index`), so a drop rule
    can remove records by position as a trainer deleting list items does (Imp's two 665K removals).
    """
    for name in files:
        for n, rec in enumerate(iter_json_array(root / name)):
            yield llava_record(rec, f"{name} record {n}", f"@{name}:{n}", move_token=move_token,
                               file_index=n if keep_index else None)
