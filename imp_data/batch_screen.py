"""A batch of normalize candidates as Arrow columns: the vectorised rule screen and the duplicate
fingerprints that `imp_data.normalize` runs BATCH_ROWS records at a time.

`screen` marks a SUPERSET of the rows that may break a `Sample` rule, so the rules keep one definition
(`imp_data.core.schema.candidate_problems` decides the marked rows); `columns` returns None for a batch that is
not plain `str` ids and `{"from": str, "value": str}` turns, which the normaliser then checks row by row.
When a batch cannot be converted at all, `isolate` finds the record(s) at fault and names why, so one
record's NaN or lone surrogate costs that record, not the batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import chain
from operator import itemgetter
from typing import NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from imp_data.core.limits import active
from imp_data.core.schema import IMAGE_TOKEN, meta_problem
from imp_data.core.tables import TURN_TYPE
from imp_data.sources.base import Candidate, Problem
from imp_data.sources.jsoncaps import too_deep

# dumps_canonical's spelling, refusing NaN/Infinity (json would write them as tokens no JSON reader takes)
_META = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def meta_json(meta: dict) -> str:
    """A candidate's meta as canonical JSON; raises ValueError (NaN, Infinity) or TypeError (not JSON)."""
    return _META(meta) if meta else "{}"


def _safe(text: str) -> str:
    """`text` writable as UTF-8: a lone surrogate becomes its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _problem(c: Candidate, reason: str, message: str) -> Problem:
    sid = _safe(c.source_id if isinstance(c.source_id, str) else repr(c.source_id))
    return Problem(sid, reason, _safe(f"{c.where}: {message}" if c.where else message))


def _texts(c: Candidate, meta: str):
    yield "id", c.source_id
    yield "image", c.image
    yield "meta", meta
    for i, turn in enumerate(c.conversations if isinstance(c.conversations, list) else ()):
        if isinstance(turn, dict):
            yield f"turn {i}", turn.get("from")
            yield f"turn {i}", turn.get("value")


def deep_metas(metas: pa.Array, cands: list[Candidate]) -> bool:
    """Whether a meta nests deeper than `limits.max_json_depth`: counted brackets over the batch (a
    superset), the structure itself for the rows with more brackets than the cap."""
    cap = active().max_json_depth
    if not len(metas) or pc.max(pc.binary_length(metas)).as_py() <= 2 * cap:  # depth d takes 2d characters
        return False
    brackets = pc.add(pc.count_substring(metas, "{"), pc.count_substring(metas, "["))
    return any(too_deep(cands[i].meta, cap) for i in np.flatnonzero(_bool(pc.greater(brackets, cap))))


def record_fault(c: Candidate) -> Candidate | Problem:
    """`c`, or the Problem of a known fault that keeps it out of a batch: meta nested deeper than the cap
    (`record_too_deep`), with NaN/Infinity (`non_finite_number`) or not JSON (`bad_type`), or text with a
    lone surrogate (`bad_unicode`)."""
    cap = active().max_json_depth
    if too_deep(c.meta, cap):
        return _problem(c, "record_too_deep", f"meta nests deeper than limits.max_json_depth ({cap})")
    try:
        meta = meta_json(c.meta)
    except (ValueError, TypeError, RecursionError) as err:
        try:
            why = meta_problem(c.meta) or str(err)
        except RecursionError:
            why = "meta is nested too deeply to write as JSON"
        reason = ("non_finite_number" if "Out of range float" in str(err) else "bad_type") \
            if not isinstance(err, RecursionError) else "record_too_deep"
        return _problem(c, reason, why)
    for name, text in _texts(c, meta):
        if isinstance(text, str) and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                return _problem(c, "bad_unicode", f"{name} holds a lone surrogate \\u{ord(text[err.start]):04x} "
                                "(not encodable as UTF-8)")
    return c


def isolate(batch: list, prepare: Callable[[list], object]) -> list:
    """`batch` (which `prepare` failed on) with each record at fault replaced by its Problem: the known
    faults first, then anything `prepare` still trips over, found by halving (`bad_record`). Raises the
    error itself when no single record explains it (a bug, not data)."""
    fixed = [record_fault(r) if isinstance(r, Candidate) else r for r in batch]
    try:
        prepare(fixed)
        return fixed
    except Exception:  # noqa: BLE001 - narrowed down below; re-raised when no record explains it
        pass

    def failing(rows: list[int]) -> list[int]:
        try:
            prepare([fixed[i] for i in rows])
            return []
        except Exception as err:  # noqa: BLE001
            if len(rows) > 1:
                return failing(rows[: len(rows) // 2]) + failing(rows[len(rows) // 2 :])
            fixed[rows[0]] = _problem(fixed[rows[0]], "bad_record",
                                      f"cannot be converted ({type(err).__name__}: {str(err)[:200]})")
            return rows

    if not failing([i for i, r in enumerate(fixed) if isinstance(r, Candidate)]):
        prepare(batch)  # raises the batch's own error
    return fixed


def safe_rejects(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Reject rows as a table; text no UTF-8 writer takes (a lone surrogate in an id) is escaped."""
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except UnicodeEncodeError:
        return pa.Table.from_pylist([{k: _safe(v) if isinstance(v, str) else v for k, v in row.items()}
                                     for row in rows], schema=schema)



def fingerprint_text(c: Candidate) -> str | None:
    """What identifies a record's content (image + turns); None when its turns cannot be spelled (such a
    record always breaks a rule)."""
    try:
        return "\x1e".join([c.image or "\x00"] + [f"{t['from']}\x1f{t['value']}" for t in c.conversations])
    except (TypeError, KeyError):
        return None


def fingerprint_hashes(texts: pa.Array) -> list[int | None]:
    """64-bit hashes of fingerprint strings (null stays None). Only records sharing a native id are ever
    compared, so a false duplicate has odds of ~2^-64 per pair."""
    hashes = pl.from_arrow(texts).hash(seed=0).to_list()
    if texts.null_count:
        hashes = [None if t is None else h for t, h in zip(texts.to_pylist(), hashes)]
    return hashes


class Columns(NamedTuple):
    source_id: pa.Array
    image: pa.Array
    conversations: pa.Array
    n_turns: np.ndarray


def columns(cands: list[Candidate], sids: list) -> Columns | None:
    """The batch as Arrow arrays (row i = candidate i), or None unless every candidate has `str` id and
    image (or None) and a list of exactly-`{"from": str, "value": str}` dicts."""
    images, convs = [c.image for c in cands], [c.conversations for c in cands]
    if set(map(type, sids)) != {str} or not set(map(type, images)) <= {str, type(None)} \
            or set(map(type, convs)) != {list}:
        return None
    turns = list(chain.from_iterable(convs))
    if set(map(type, turns)) != {dict} or set(map(len, turns)) != {2}:
        return None
    try:
        froms, values = list(map(itemgetter("from"), turns)), list(map(itemgetter("value"), turns))
    except KeyError:
        return None
    if set(map(type, froms)) != {str} or set(map(type, values)) != {str}:
        return None
    n_turns = np.fromiter(map(len, convs), np.int32, len(convs))
    offsets = np.concatenate([[0], np.cumsum(n_turns, dtype=np.int32)])
    turn_arr = pa.StructArray.from_arrays([pa.array(froms, pa.string()), pa.array(values, pa.string())],
                                          fields=list(TURN_TYPE))
    conv_arr = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), turn_arr, type=pa.list_(TURN_TYPE))
    return Columns(pa.array(sids, pa.string()), pa.array(images, pa.string()), conv_arr, n_turns)


def column_fingerprints(cols: Columns) -> list[int]:
    """`fingerprint_text` of every row, spelled column-wise, hashed."""
    conv, turns = cols.conversations, cols.conversations.values
    spelled = pc.binary_join_element_wise(turns.field("from"), turns.field("value"), "\x1f")
    joined = pc.binary_join(pa.ListArray.from_arrays(conv.offsets, spelled), "\x1e")
    image = pc.fill_null(cols.image, "")
    image = pc.if_else(pc.equal(image, ""), "\x00", image)
    return fingerprint_hashes(pc.if_else(pa.array(cols.n_turns == 0), image,
                                         pc.binary_join_element_wise(image, joined, "\x1e")))


def _holds(array: pa.Array, needle: bytes) -> bool:
    """Whether the string array's data buffer holds `needle` anywhere (a superset, at memchr speed)."""
    data = array.buffers()[2]
    return data is not None and data.to_pybytes().find(needle) >= 0


def _bool(array: pa.Array) -> np.ndarray:
    return pc.fill_null(array, False).to_numpy(zero_copy_only=False)


def screen(cols: Columns) -> np.ndarray:
    """Rows that might break a schema rule: a SUPERSET of the failing rows (`candidate_problems` decides).

    An unmarked row provably passes: >= 2 turns, an even count, roles alternating human/gpt, every value
    holding a printable ASCII character (so not empty or whitespace), `<image>` exactly once in the first
    turn iff there is an image, a non-empty id, and an image path with a printable character and no
    leading '/' or '\\', drive letter, '..' or NUL. Ids holding '#' are marked too: their plain or
    suffixed form may collide with a repeat suffix, which only the normaliser's loop can decide.
    """
    n, offsets = cols.n_turns, cols.conversations.offsets.to_numpy()
    marked = (n < 2) | (n % 2 == 1)
    parent = np.repeat(np.arange(len(n)), n)
    position = np.arange(offsets[-1]) - np.repeat(offsets[:-1], n)
    role, value = cols.conversations.values.field("from"), cols.conversations.values.field("value")
    role_ok = np.where(position % 2 == 1, _bool(pc.equal(role, "gpt")), _bool(pc.equal(role, "human")))
    printable = _bool(pc.match_substring_regex(value, "[!-~]"))
    has_image = _bool(pc.is_valid(cols.image))
    tokens_ok = pc.count_substring(value, IMAGE_TOKEN).to_numpy() == ((position == 0) & has_image[parent])
    marked[parent[~(role_ok & printable & tokens_ok)]] = True
    marked |= _bool(pc.equal(pc.binary_length(cols.source_id), 0))
    if _holds(cols.source_id, b"#"):
        marked |= _bool(pc.match_substring(cols.source_id, "#"))
    marked |= has_image & ~_bool(pc.match_substring_regex(cols.image, "[!-~]"))
    marked |= _bool(pc.match_substring_regex(cols.image, r"^[/\\]|^[A-Za-z]:|\.\.|\x00"))
    return marked
