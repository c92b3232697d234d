"""Stream records out of large JSON files without loading them whole.

The real annotation files are ~1 GB JSON *lists* (LLaVA-665K, ALLaVA). `json.load` would hold the text and
every object at once; instead we read fixed-size chunks and let the C scanner (`JSONDecoder.raw_decode`)
decode one element at a time, so memory stays at one chunk plus one record and speed stays near
`json.loads`. Errors name the file, the byte offset and the record number, never a traceback.

Lists are read by a tight loop (C scanner + one separator regex per element) while an element and the
comma after it lie wholly inside the window; anything else — a window edge, the closing bracket, a
malformed element — takes the careful one-element step, which refills the window and words the errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imp_data.errors import SourceFormatError

_CHUNK = 1 << 22  # 4 MiB: large enough that refills are rare, small enough to bound memory
_WS = " \t\n\r"
_MAX_RECORD = 1 << 26  # no single record is larger; beyond this a decode error is real
_DECODER = json.JSONDecoder()
_SCAN = _DECODER.scan_once  # the C scanner behind raw_decode, without its Python wrapper
_COMMA = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")


class _Buffer:
    """A sliding text window over a file, with the absolute character offset of its start."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, encoding="utf-8-sig", errors="strict", newline="")
        self.text = ""
        self.pos = 0
        self.base = 0  # characters consumed before self.text[0]
        self.eof = False

    def close(self) -> None:
        self.file.close()

    def fill(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.file.read(_CHUNK)
        except UnicodeDecodeError as err:
            raise SourceFormatError(f"{self.path}: not UTF-8 text ({err.reason} near byte {err.start})") from None
        if not chunk:
            self.eof = True
            return False
        self.base += self.pos
        self.text = self.text[self.pos :] + chunk
        self.pos = 0
        return True

    def skip_ws(self) -> str:
        """Skip whitespace; return the next character ('' at end of file)."""
        while True:
            n = len(self.text)
            while self.pos < n and self.text[self.pos] in _WS:
                self.pos += 1
            if self.pos < n:
                return self.text[self.pos]
            if not self.fill():
                return ""

    def offset(self) -> int:
        return self.base + self.pos

    def decode_value(self, what: str) -> Any:
        """Decode one JSON value starting at pos, growing the window while the value may be cut off."""
        self.skip_ws()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as err:
                # The value may simply continue in the next chunk; a real error stays one at EOF.
                if len(self.text) - self.pos < _MAX_RECORD and self.fill():
                    continue
                raise SourceFormatError(
                    f"{self.path}: malformed JSON at character {self.base + err.pos} ({what}): {err.msg}"
                ) from None
            # A number at the window's end may continue in the next chunk ("12" | "34").
            if end == len(self.text) and self.fill():
                continue
            self.pos = end
            return value


def iter_json_array(path: str | Path, *, key: str | None = None) -> Iterator[Any]:
    """Yield the elements of a top-level JSON list (or of `top[key]` when the top level is an object).

    Args:
        path: the JSON file.
        key: for files whose top level is an object holding the list (DocVQA's ``{"data": [...]}``).

    Raises:
        SourceFormatError: malformed JSON (with character offset and record number) or a wrong top-level type.

    Example:
        >>> import json, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.json"; _ = p.write_text('[{"id": 1}, {"id": 2}]')
        >>> [r["id"] for r in iter_json_array(p)]
        [1, 2]
    """
    path = Path(path)
    buf = _Buffer(path)
    try:
        first = buf.skip_ws()
        if key is None:
            if first != "[":
                found = {"{": "an object", "": "an empty file"}.get(first, f"{first!r}")
                raise SourceFormatError(f"{path}: expected a JSON list at the top level, found {found}")
        else:
            if first != "{":
                found = {"[": "a list", "": "an empty file"}.get(first, f"{first!r}")
                raise SourceFormatError(f"{path}: expected a JSON object with a {key!r} list, found {found}")
            yield from _iter_keyed(buf, key)
            return
        buf.pos += 1
        yield from _iter_list_body(buf)
        if buf.skip_ws() != "":
            raise SourceFormatError(f"{path}: unexpected data after the top-level list at character {buf.offset()}")
    finally:
        buf.close()


def _iter_list_body(buf: _Buffer) -> Iterator[Any]:
    """Decode elements after an opening '[' up to and including the matching ']'."""
    n = 0
    if buf.skip_ws() == "]":
        buf.pos += 1
        return
    scan, comma = _SCAN, _COMMA.match
    while True:
        # Fast: an element followed by a comma, both ending before the window does (so neither is cut).
        # Only the first half of a full window is read this way, so elements are rarely cut at its end.
        buf.skip_ws()
        if len(buf.text) - buf.pos < _CHUNK // 2:
            buf.fill()
        text, pos, stop = buf.text, buf.pos, len(buf.text)
        limit = stop if buf.eof else stop - _CHUNK // 2
        while pos < limit:
            try:
                value, end = scan(text, pos)
            except (StopIteration, json.JSONDecodeError):
                break
            m = comma(text, end)
            if m is None or m.end() >= stop:
                break
            pos = m.end()
            n += 1
            yield value
        buf.pos = pos
        # Careful: one element with refills and worded errors (also the last element, before ']').
        if buf.skip_ws() == "":
            raise SourceFormatError(f"{buf.path}: file ends inside the list after record {n} (truncated?)")
        yield buf.decode_value(f"record {n}")
        n += 1
        sep = buf.skip_ws()
        if sep == ",":
            buf.pos += 1
        elif sep == "]":
            buf.pos += 1
            return
        elif sep == "":
            raise SourceFormatError(f"{buf.path}: file ends inside the list after record {n} (truncated?)")
        else:
            raise SourceFormatError(
                f"{buf.path}: malformed JSON at character {buf.offset()} (after record {n - 1}): expected ',' or ']'"
            )


def _iter_keyed(buf: _Buffer, key: str) -> Iterator[Any]:
    """Walk a top-level object, streaming the list under `key` and decoding (small) other values whole."""
    buf.pos += 1
    found = False
    while True:
        c = buf.skip_ws()
        if c == "}":
            buf.pos += 1
            break
        if c == ",":
            buf.pos += 1
            continue
        name = buf.decode_value("object key")
        if buf.skip_ws() != ":":
            raise SourceFormatError(f"{buf.path}: malformed JSON at character {buf.offset()}: expected ':'")
        buf.pos += 1
        if name == key:
            if buf.skip_ws() != "[":
                raise SourceFormatError(f"{buf.path}: {key!r} must be a list")
            buf.pos += 1
            found = True
            yield from _iter_list_body(buf)
        else:
            buf.decode_value(f"value of {name!r}")
    if not found:
        raise SourceFormatError(f"{buf.path}: top-level object has no {key!r} list")


def iter_jsonl(path: str | Path) -> Iterator[Any]:
    """Yield one JSON value per non-empty line; errors name the line number."""
    path = Path(path)
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                raise SourceFormatError(f"{path}: malformed JSON on line {lineno}, column {err.colno}: {err.msg}") from None


def read_json(path: str | Path) -> Any:
    """Load a small JSON file whole, with a one-line error naming file and offset."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise SourceFormatError(f"{path}: malformed JSON at character {err.pos} (line {err.lineno}): {err.msg}") from None
    except UnicodeDecodeError as err:
        raise SourceFormatError(f"{path}: not UTF-8 text ({err.reason})") from None
