"""Stream records out of large JSON files without loading them whole.

The real annotation files are ~1 GB JSON *lists* (LLaVA-665K, ALLaVA). `json.load` would hold the text and
every object at once; instead we read fixed-size chunks and let the C scanner (`JSONDecoder.raw_decode`)
decode one element at a time, so memory stays at one chunk plus one record and speed stays near
`json.loads`. Errors name the file, the offset and the record number, never a traceback.

Lists are read by a tight loop (C scanner + one separator regex per element) while an element and the
comma after it lie wholly inside the window; anything else — a window edge, the closing bracket, a
malformed element, a record that may break a cap — takes the careful one-element step, which refills
the window, words the errors and applies the caps.

One bad record costs one record: a record over `limits.max_record_bytes`, nested deeper than the C
scanner can recurse or holding an integer too long to convert is yielded as a `BadRecord`, which the
adapter turns into a reject (see `imp_data.sources.jsoncaps`); the reader skips its text without
decoding it and goes on. Depth below that and lone surrogates are judged where they would do harm, on
what a record keeps (`imp_data.normalize`): checking every record's text here would cost a quarter of
the reader's speed. A file that is not JSON of the expected shape, or not UTF-8, stays one
`SourceFormatError` naming the file and offset (a byte offset for bytes that are not UTF-8).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imp_data.core.errors import SourceFormatError
from imp_data.core.limits import active
from imp_data.sources.jsoncaps import BadRecord, bad_number, larger_than, too_deep_record, too_large_record

_CHUNK = 1 << 22  # bytes per read, 4 MiB: large enough that refills are rare, small enough to bound memory
_WS = " \t\n\r"
_BOM = b"\xef\xbb\xbf"
_DECODER = json.JSONDecoder()
_SCAN = _DECODER.scan_once  # the C scanner behind raw_decode, without its Python wrapper
_COMMA = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")
_STRUCT = re.compile(r'["\[\]{}]')
_STRING_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)  # up to a closing quote (or a cut escape)
_SCALAR_END = re.compile(r"[ \t\n\r,\]}]")


class _Buffer:
    """A sliding text window over a file, with the absolute character offset of its start."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "rb")
        head = self.file.read(3)
        if head != _BOM:
            self.file.seek(0)
        self.bytes_read = self.file.tell()
        self.decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.text = ""
        self.pos = 0
        self.base = 0  # characters consumed before self.text[0]
        self.eof = False

    def close(self) -> None:
        self.file.close()

    def fill(self, size: int = 0) -> bool:
        """Append at least `size` (default one chunk of) bytes' worth of text; False at end of file."""
        added = ""
        while not self.eof and (not added or len(added) < size):
            data = self.file.read(max(size - len(added), _CHUNK))
            start = self.bytes_read - len(self.decoder.getstate()[0])  # where the decoded bytes begin
            self.bytes_read += len(data)
            try:
                added += self.decoder.decode(data, final=not data)
            except UnicodeDecodeError as err:
                raise SourceFormatError(f"{self.path}: not UTF-8 text ({err.reason} at byte {start + err.start})") \
                    from None
            self.eof = not data
        if not added:
            return False
        self.base += self.pos
        self.text = self.text[self.pos :] + added
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
        """Decode one (small, non-record) JSON value at pos; every problem is one line naming the file."""
        value = self.decode_record(what)
        if isinstance(value, BadRecord):
            raise SourceFormatError(f"{self.path}: {what} at character {self.offset()}: {value.detail}")
        return value

    def decode_record(self, what: str) -> Any:
        """Decode one record at pos, growing the window while it may be cut off; a record that breaks a
        cap is skipped and returned as a `BadRecord`."""
        limits = active()
        cap = limits.max_record_bytes
        self.skip_ws()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as err:
                # The value may simply continue in the next chunk; a real error stays one at EOF.
                if larger_than(self.text, self.pos, len(self.text), cap):
                    self.skip_value(what)
                    return too_large_record(cap)
                have = len(self.text) - self.pos  # doubling (a 70 MB record is decoded ~5 times, not 17), but
                if self.fill(min(have, cap + 1 - have)):  # never past the cap: memory stays ~cap
                    continue
                raise SourceFormatError(
                    f"{self.path}: malformed JSON at character {self.base + err.pos} ({what}): {err.msg}"
                ) from None
            except RecursionError:
                self.skip_value(what)
                return too_deep_record(limits.max_json_depth)
            except ValueError as err:  # an integer of more than sys.get_int_max_str_digits() digits
                self.skip_value(what)
                return bad_number(err)
            # A number at the window's end may continue in the next chunk ("12" | "34").
            if end == len(self.text) and self.fill():
                continue
            start, self.pos = self.pos, end
            return too_large_record(cap) if larger_than(self.text, start, end, cap) else value

    def skip_value(self, what: str) -> None:
        """Move pos past the JSON value at pos without decoding it (brackets and strings only), reading
        on as needed and dropping what is passed, so memory stays one window however large the value."""
        depth, in_string = 0, False
        pos = self.pos
        if self.text[pos] not in '"[{':  # a scalar: up to the next delimiter
            while (m := _SCALAR_END.search(self.text, pos)) is None:
                self.pos = pos = len(self.text)
                if not self.fill():
                    break
                pos = self.pos
            self.pos = m.start() if m else len(self.text)
            return
        while True:
            text = self.text
            if in_string:
                pos = _STRING_BODY.match(text, pos).end()
                if pos < len(text) and text[pos] == '"':
                    pos, in_string = pos + 1, False
                    if depth == 0:
                        self.pos = pos
                        return
                    continue
            else:
                m = _STRUCT.search(text, pos)
                if m is not None:
                    pos, c = m.end(), m.group()
                    if c == '"':
                        in_string = True
                    else:
                        depth += 1 if c in "[{" else -1
                        if depth <= 0:
                            self.pos = pos
                            return
                    continue
                pos = len(text)
            self.pos = pos  # drop what was passed; a cut escape ('\\' at the end) is kept
            if not self.fill():
                raise SourceFormatError(f"{self.path}: file ends inside {what} (truncated?)")
            pos = self.pos


def iter_json_array(path: str | Path, *, key: str | None = None) -> Iterator[Any]:
    """Yield the elements of a top-level JSON list (or of `top[key]` when the top level is an object);
    an element that breaks a cap of `imp_data.core.limits.active()` is yielded as a `BadRecord`.

    Args:
        path: the JSON file.
        key: for files whose top level is an object holding the list (DocVQA's ``{"data": [...]}``).

    Raises:
        SourceFormatError: malformed JSON (with character offset and record number), not UTF-8 (with the
            byte offset) or a wrong top-level type.

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
    quarter = active().max_record_bytes // 4  # a character takes at most 4 bytes
    n = 0
    if buf.skip_ws() == "]":
        buf.pos += 1
        return
    scan, comma = _SCAN, _COMMA.match
    while True:
        # Fast: an element followed by a comma, both ending before the window does (so neither is cut).
        # Only the first half of a full window is read this way, so elements are rarely cut at its end. An
        # element ending past `edge` is left to the careful step: so one longer than a quarter of the byte
        # cap in characters (which may be over it) is, at no cost per element.
        buf.skip_ws()
        if len(buf.text) - buf.pos < _CHUNK // 2:
            buf.fill()
        text, pos, stop = buf.text, buf.pos, len(buf.text)
        limit = stop if buf.eof else stop - _CHUNK // 2
        edge = min(stop, pos + quarter)
        while pos < limit:
            try:
                value, end = scan(text, pos)
            except (StopIteration, ValueError, RecursionError):
                break
            m = comma(text, end)
            if m is None or m.end() >= edge:
                break
            pos = m.end()
            n += 1
            yield value
        buf.pos = pos
        # Careful: one element with refills, caps and worded errors (also the last element, before ']').
        if buf.skip_ws() == "":
            raise SourceFormatError(f"{buf.path}: file ends inside the list after record {n} (truncated?)")
        yield buf.decode_record(f"record {n}")
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
                raise SourceFormatError(f"{path}: malformed JSON on line {lineno}, column {err.colno}: "
                                        f"{err.msg}") from None


def read_json(path: str | Path) -> Any:
    """Load a small JSON file whole, with a one-line error naming file and offset."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise SourceFormatError(f"{path}: malformed JSON at character {err.pos} (line {err.lineno}): "
                                f"{err.msg}") from None
    except UnicodeDecodeError as err:
        raise SourceFormatError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except RecursionError:
        raise SourceFormatError(f"{path}: JSON nested too deeply to read") from None
