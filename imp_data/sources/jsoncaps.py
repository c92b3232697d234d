"""The caps on one JSON record (recipe `limits`), shared by the streaming reader, whole-file reads and
the normaliser.

A record past a cap is not an error of the file: the readers return it as a `BadRecord`, which the adapter
turns into a reject named by file and record, and reading goes on. What the readers refuse is what would
stop them: more bytes than `max_record_bytes` (skipped unread), more nesting than the C scanner can recurse
(`RecursionError`), an integer too long to convert. `max_json_depth` is applied to what a record keeps —
its meta, by the normaliser (`too_deep`) — since conversations deeper than a list of `{from, value}`
strings are already a `bad_type` reject, and measuring every record's text would cost a quarter of the
reader's speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imp_data.core.errors import SourceFormatError
from imp_data.core.limits import active

_BOM = b"\xef\xbb\xbf"


class BadRecord:
    """A record the reader refused (too large, too deep to decode, unconvertible number): the adapter
    makes it a `Problem` with this reason, named by its file and record number."""

    __slots__ = ("detail", "reason")

    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail

    def __repr__(self) -> str:
        return f"BadRecord({self.reason!r}, {self.detail!r})"


def too_large_record(cap: int) -> BadRecord:
    return BadRecord("record_too_large", f"larger than limits.max_record_bytes ({cap:,} bytes)")


def too_deep_record(cap: int) -> BadRecord:
    return BadRecord("record_too_deep", f"nested deeper than limits.max_json_depth ({cap})")


def bad_number(err: ValueError) -> BadRecord:
    return BadRecord("bad_number", str(err).split(";")[0])  # "Exceeds the limit (4300 digits) ..."


def larger_than(text: str, start: int, end: int, cap: int) -> bool:
    """Whether text[start:end] takes more than `cap` bytes in UTF-8 (encoded only when it may)."""
    n = end - start
    if n > cap:
        return True
    return n * 4 > cap and len(text[start:end].encode("utf-8", "surrogatepass")) > cap


def too_deep(value: Any, cap: int) -> bool:
    """Whether `value` nests containers deeper than `cap` (a flat object or list has depth 1)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            if depth > cap:
                return True
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def read_record(path: str | Path) -> Any:
    """A small JSON file that is one record (an AI2D diagram): its value, or a `BadRecord` when it breaks
    a cap; malformed JSON and non-UTF-8 bytes are one `SourceFormatError` line with the offset."""
    path = Path(path)
    limits = active()
    if path.stat().st_size > limits.max_record_bytes + len(_BOM):
        return too_large_record(limits.max_record_bytes)
    data = path.read_bytes()
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        raise SourceFormatError(f"{path}: not UTF-8 text ({err.reason} at byte {skip + err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SourceFormatError(f"{path}: malformed JSON at character {err.pos} (line {err.lineno}): "
                                f"{err.msg}") from None
    except RecursionError:
        return too_deep_record(limits.max_json_depth)
    except ValueError as err:
        return bad_number(err)
