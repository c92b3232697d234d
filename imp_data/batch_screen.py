"""A batch of normalize candidates as Arrow columns: the vectorised rule screen and the duplicate
fingerprints that `imp_data.normalize` runs BATCH_ROWS records at a time.

`screen` marks a SUPERSET of the rows that may break a `Sample` rule, so the rules keep one definition
(`imp_data.schema.candidate_problems` decides the marked rows); `columns` returns None for a batch that is
not plain `str` ids and `{"from": str, "value": str}` turns, which the normaliser then checks row by row.
"""

from __future__ import annotations

from itertools import chain
from operator import itemgetter
from typing import NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from imp_data.schema import IMAGE_TOKEN
from imp_data.sources.base import Candidate

TURN_TYPE = pa.struct([("from", pa.string()), ("value", pa.string())])



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
    return fingerprint_hashes(pc.if_else(pa.array(cols.n_turns == 0), image, pc.binary_join_element_wise(image, joined, "\x1e")))


def _bool(array: pa.Array) -> np.ndarray:
    return pc.fill_null(array, False).to_numpy(zero_copy_only=False)


def screen(cols: Columns) -> np.ndarray:
    """Rows that might break a schema rule: a SUPERSET of the failing rows (`candidate_problems` decides).

    An unmarked row provably passes: >= 2 turns, an even count, roles alternating human/gpt, every value
    holding a printable ASCII character (so not empty or whitespace), `<image>` exactly once in the first
    turn iff there is an image, a non-empty id, and an image path with a printable character and no
    leading '/' or '\\', drive letter, '..' or NUL.
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
    marked |= has_image & ~_bool(pc.match_substring_regex(cols.image, "[!-~]"))
    marked |= _bool(pc.match_substring_regex(cols.image, r"^[/\\]|^[A-Za-z]:|\.\.|\x00"))
    return marked
