"""Near-duplicate search over 64-bit perceptual hashes: multi-index hashing, vectorised with numpy.

Two hashes within Hamming distance d differ in at most d of any m = d + k disjoint bit blocks, so they
agree exactly on at least k of them (pigeonhole). Every k-subset of blocks is a key (k = 2, d = 4: 15
keys of ~21 bits); candidates are hashes sharing a key — found by sorting, never by comparing all
pairs — and each candidate is verified with a popcount. A verified pair is kept only under the first
k-subset it agrees on, so each pair comes out exactly once and no dedup pass over candidates is needed.

Real phash sets are not uniform, and the design choice that keeps them cheap is to bound the work of
crowded keys instead of hoping they are rare:

- identical hashes (one COCO image in many records, blank images) are collapsed first: the search runs
  on distinct values and item pairs are expanded only when asked for (`self_pairs`, `query`);
- a bucket of many *distinct* values sharing a key (charts or scanned pages with the same layout) is
  refined: its free bits are split into d + 1 sub-blocks, one of which any within-d pair must share,
  and it is re-bucketed by each — recursively, but only while that at least halves the bucket's
  candidate count; otherwise the bucket's pairs are all verified, in slices of `slice_pairs`, so memory
  stays bounded by the slice plus the answer. Recall is exact in every case.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from imp_data.core.errors import ImpDataError

_ALL = (1 << 64) - 1
_HEX = np.full(256, 255, dtype=np.uint8)  # ASCII byte -> nibble value, 255 for "not a hex digit"
_HEX[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
_SHIFTS = np.arange(60, -4, -4, dtype=np.uint64)  # nibble k of a 16-digit hex string -> bits 60-4k
_POP8 = np.array([b.bit_count() for b in range(256)], dtype=np.uint8)  # popcount without numpy 2


def phash_to_uint64(value: str) -> int:
    """imagehash's 16-hex-digit phash as an unsigned 64-bit integer.

    Example:
        >>> phash_to_uint64("8000000000000001")
        9223372036854775809
    """
    return int(phashes_to_array([value])[0])


def phashes_to_array(values) -> np.ndarray:
    """Vectorised `phash_to_uint64` over a list, numpy array, polars Series or pyarrow array of strings.

    Raises:
        ImpDataError: a value is not exactly 16 hex digits (named, with its position).

    Example:
        >>> phashes_to_array(["0000000000000003", "ffffffffffffffff"]).tolist()
        [3, 18446744073709551615]
    """
    if hasattr(values, "to_list"):
        values = values.to_list()
    elif hasattr(values, "to_pylist"):
        values = values.to_pylist()
    if len(values) == 0:
        return np.zeros(0, np.uint64)
    try:
        raw = np.asarray(values, dtype="S17").view(np.uint8).reshape(-1, 17)  # 17: catch over-long strings
    except (UnicodeEncodeError, TypeError, ValueError) as exc:
        raise ImpDataError(f"phash values must be 16-hex-digit strings ({exc}) — re-run the render stage") from exc
    nibbles = _HEX[raw[:, :16]]
    bad = (nibbles == 255).any(axis=1) | (raw[:, 16] != 0)
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        raise ImpDataError(f"phash {values[at]!r} (row {at}) is not 16 hex digits — re-run the render stage")
    return np.bitwise_or.reduce(nibbles.astype(np.uint64) << _SHIFTS, axis=1)


def popcount64(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (the Hamming distance of two hashes is `popcount64(a ^ b)`), as uint8."""
    x = np.asarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):  # numpy >= 2: the CPU's popcount instruction
        return np.bitwise_count(x)
    return _POP8[x.reshape(-1, 1).view(np.uint8)].sum(axis=1, dtype=np.uint8).reshape(x.shape)


def bit_blocks(mask: int, parts: int) -> list[int]:
    """Split the set bits of `mask` into `parts` runs of near-equal size, low bits first.

    Example:
        >>> [hex(b) for b in bit_blocks(0xFF, 3)]
        ['0x7', '0x38', '0xc0']
    """
    bits = [b for b in range(64) if mask >> b & 1]
    sizes = [len(bits) // parts + (i < len(bits) % parts) for i in range(parts)]
    starts = np.cumsum([0] + sizes)
    return [sum(1 << b for b in bits[s:e]) for s, e in itertools.pairwise(starts)]


def _ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The ranges [s, s + l) of every (s, l), concatenated."""
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + np.arange(int(lengths.sum()), dtype=np.int64) - offsets


@dataclass
class SearchStats:
    """What a search cost: the figures `bench/dedup.py` reports."""

    candidates: int = 0  # pairs verified with a popcount
    pairs: int = 0  # pairs within distance (distinct values)
    refined_buckets: int = 0  # crowded buckets split by sub-blocks
    sliced_buckets: int = 0  # crowded buckets verified pair by pair (refining would not halve them)
    largest_bucket: int = 0
    max_depth: int = 0


class HashIndex:
    """Distinct 64-bit hashes and the items holding each, answering "which pairs are within distance d".

    Args:
        hashes: uint64 hashes, one per item (see `phashes_to_array`).
        max_distance: d, the largest Hamming distance that counts as a near duplicate (0..32).
        k: blocks that must agree; m = d + k blocks (2 suits 10^5..10^7 hashes at d <= 6).
        bucket_pairs: a bucket with more candidate pairs than this is considered for refinement.
        slice_pairs: candidate pairs generated and verified at once (bounds memory).
        max_pairs: the most result pairs a call may return before it raises (a guard against a
            threshold so loose that the answer itself cannot fit in memory).

    Example:
        >>> index = HashIndex(np.array([0, 0, 3, 0xFF00FF00], dtype=np.uint64), max_distance=2)
        >>> [a.tolist() for a in index.self_pairs()]
        [[0, 0, 1], [1, 2, 2], [0, 2, 2]]
    """

    def __init__(self, hashes: np.ndarray, max_distance: int, *, k: int = 2, bucket_pairs: int = 2048,
                 slice_pairs: int = 1 << 22, max_pairs: int = 50_000_000):
        if not 0 <= max_distance <= 32:
            raise ValueError(f"max_distance must be in 0..32, got {max_distance}")
        hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        self.d, self.k = int(max_distance), int(k)
        self.bucket_pairs, self.slice_pairs, self.max_pairs = bucket_pairs, slice_pairs, max_pairs
        # distinct values, and the items of each: items sorted by value, value v owns [starts[v], starts[v+1])
        self.values, self.inverse, self.counts = np.unique(hashes, return_inverse=True, return_counts=True)
        self.items = np.argsort(self.inverse, kind="stable")
        self.starts = np.concatenate([[0], np.cumsum(self.counts)])
        blocks = bit_blocks(_ALL, self.d + self.k)
        self._keys = []  # (mask of the k blocks, masks whose agreement means an earlier key found the pair)
        for combo in itertools.combinations(range(len(blocks)), self.k):
            earlier = [blocks[b] for b in range(combo[-1]) if b not in combo]
            self._keys.append((sum(blocks[b] for b in combo), earlier))
        self.stats = SearchStats()

    # ---- public queries -------------------------------------------------------------------------

    def value_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs (u < v) of distinct values within distance d, as positions in `self.values`, sorted."""
        u, v, dist = self._search(self.values, None)
        lo, hi = np.minimum(u, v), np.maximum(u, v)
        order = np.lexsort((hi, lo))
        return lo[order], hi[order], dist[order]

    def self_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All item pairs i < j within distance d (identical hashes included), sorted by (i, j).

        The answer is quadratic in the size of groups of identical hashes by nature; callers that only
        need groups should use `value_pairs` with `inverse`.
        """
        # items sharing a value: every pair inside each group of identical hashes
        n = self.counts
        rows = np.flatnonzero(n > 1)
        firsts = _ragged_arange(self.starts[rows], n[rows])  # positions in self.items
        ends = np.repeat(self.starts[rows + 1], n[rows])
        left, right = self._expand(firsts, firsts + 1, ends)
        u, v, dist = self.value_pairs()
        a, b = self._expand_cross(u, v, self.starts, self.starts)
        i = np.concatenate([self.items[left], self.items[a]])
        j = np.concatenate([self.items[right], self.items[b]])
        dist = np.concatenate([np.zeros(len(left), np.uint8), np.repeat(dist, n[u] * n[v])])
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        order = np.lexsort((hi, lo))
        return lo[order], hi[order], dist[order]

    def pairs_with(self, other: HashIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs (u, v) of distinct values within d, u a position in `other.values`, v in `self.values`."""
        return self._search(other.values, self.values)

    def query(self, other: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (query item, indexed item, distance) within d, sorted by (query item, indexed item)."""
        other = HashIndex(other, self.d, k=self.k)
        a, b, dist = self.pairs_with(other)
        qa, qb = self._expand_cross(a, b, other.starts, self.starts)
        i, j = other.items[qa], self.items[qb]
        dist = np.repeat(dist, other.counts[a] * self.counts[b])
        order = np.lexsort((j, i))
        return i[order], j[order], dist[order]

    # ---- expansion from values to items ---------------------------------------------------------

    def _check_size(self, pairs: int) -> None:
        if pairs > self.max_pairs:
            raise ImpDataError(f"{pairs} hash pairs within distance {self.d} exceed max_pairs={self.max_pairs} "
                               "— lower the recipe's max_distance (or raise max_pairs if memory allows)")

    def _expand(self, left: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(left[p], r) for every r in [lo[p], hi[p]) — guarded by max_pairs."""
        counts = hi - lo
        self._check_size(int(counts.sum()))
        return np.repeat(left, counts), _ragged_arange(lo, counts)

    def _expand_cross(self, u, v, starts_u, starts_v) -> tuple[np.ndarray, np.ndarray]:
        """Item positions of every (item of value u, item of value v), for each value pair (u, v)."""
        nu = starts_u[u + 1] - starts_u[u]
        left_rows = _ragged_arange(starts_u[u], nu)  # each item of u, once per pair
        return self._expand(left_rows, np.repeat(starts_v[v], nu), np.repeat(starts_v[v + 1], nu))

    # ---- the search -----------------------------------------------------------------------------

    def _search(self, a: np.ndarray, b: np.ndarray | None):
        """Pairs within d among distinct values `a` (b None) or between `a` and `b`: (pos in a, pos in b/a, dist)."""
        self.stats = SearchStats()
        vals = a if b is None else np.concatenate([a, b])
        side = None if b is None else np.concatenate([np.zeros(len(a), bool), np.ones(len(b), bool)])
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        everyone = np.arange(len(vals), dtype=np.int64)
        for mask, earlier in self._keys:
            members, starts = _bucket(everyone, vals & np.uint64(mask), side)
            self._visit(vals, side, members, starts, mask, earlier, found, depth=0)
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8)
        i, j, dist = (np.concatenate(parts) for parts in zip(*found))
        self.stats.pairs = len(i)
        return i, (j if b is None else j - len(a)), dist

    def _visit(self, vals, side, members, starts, fixed: int, earlier: list[int], found, depth: int) -> None:
        """Verify or refine the buckets [starts[g], starts[g+1]) of `members`, which agree on `fixed` bits."""
        self.stats.max_depth = max(self.stats.max_depth, depth)
        sizes = np.diff(starts)
        n_a, cost = _costs(members, starts, side)
        if len(cost):
            self.stats.largest_bucket = max(self.stats.largest_bucket, int(sizes.max()))
        crowded = np.flatnonzero(cost > self.bucket_pairs)
        free = _ALL & ~fixed
        refine = np.zeros(len(cost), bool)
        children = []
        if len(crowded) and free.bit_count() > self.d:
            owner = np.repeat(np.arange(len(cost)), sizes)
            keep = np.isin(owner, crowded)
            sub_members, sub_owner = members[keep], owner[keep]
            parts = bit_blocks(free, self.d + 1)
            child_cost = np.zeros(len(cost), np.int64)
            for part in parts:
                kid_members, kid_starts, kid_owner = _bucket_by(sub_members, sub_owner, vals, part, side)
                np.add.at(child_cost, kid_owner, _costs(kid_members, kid_starts, side)[1])
                children.append((part, kid_members, kid_starts, kid_owner))
            refine[crowded] = child_cost[crowded] * 2 <= cost[crowded]
            self.stats.refined_buckets += int(refine.sum())
        self.stats.sliced_buckets += int(len(crowded) - refine.sum())
        direct = np.flatnonzero((cost > 0) & ~refine)
        self._verify(vals, side, members, starts[direct], sizes[direct], n_a[direct], earlier, found)
        for j, (part, kid_members, kid_starts, kid_owner) in enumerate(children):
            keep_bucket = refine[kid_owner]
            if not keep_bucket.any():
                continue
            kid_sizes = np.diff(kid_starts)[keep_bucket]
            kept = np.repeat(keep_bucket, np.diff(kid_starts))
            kid_members = kid_members[kept]
            kid_starts = np.concatenate([[0], np.cumsum(kid_sizes)])
            # a pair sharing several sub-blocks is kept only under the first one
            self._visit(vals, side, kid_members, kid_starts, fixed | part, earlier + parts[:j], found, depth + 1)

    def _verify(self, vals, side, members, starts, sizes, n_a, earlier: list[int], found) -> None:
        """Popcount every candidate pair of the given buckets, a slice at a time; keep those within d."""
        if not len(starts):
            return
        if side is None:  # each position pairs with the later positions of its bucket
            pos = _ragged_arange(starts, sizes)
            lo, hi = pos + 1, np.repeat(starts + sizes, sizes)
        else:  # bucket sorted query-side first: each query position pairs with every indexed position
            pos = _ragged_arange(starts, n_a)
            lo, hi = np.repeat(starts + n_a, n_a), np.repeat(starts + sizes, n_a)
        counts = hi - lo
        cum = np.cumsum(counts)
        cuts = np.searchsorted(cum, np.arange(self.slice_pairs, int(cum[-1]), self.slice_pairs), side="left")
        for s, e in zip(np.r_[0, cuts + 1], np.r_[cuts + 1, len(pos)]):
            if s >= e:
                continue
            left = np.repeat(members[pos[s:e]], counts[s:e])
            right = members[_ragged_arange(lo[s:e], counts[s:e])]
            x = vals[left] ^ vals[right]
            dist = popcount64(x)
            ok = dist <= self.d
            for mask in earlier:
                ok &= (x & np.uint64(mask)) != 0
            self.stats.candidates += len(x)
            if ok.any():
                found.append((left[ok], right[ok], dist[ok]))
                self._check_size(sum(len(f[0]) for f in found))


def _costs(members: np.ndarray, starts: np.ndarray, side: np.ndarray | None):
    """Per bucket: members on the query side (all, for a self search) and candidate pairs."""
    sizes = np.diff(starts)
    if side is None:
        return sizes, sizes * (sizes - 1) // 2
    n_a = np.add.reduceat((~side[members]).astype(np.int64), starts[:-1]) if len(members) else sizes
    return n_a, n_a * (sizes - n_a)


def _bucket(members: np.ndarray, keys: np.ndarray, side: np.ndarray | None):
    """Sort `members` by key (query side first within a key); return members and bucket starts (size >= 2)."""
    order = np.argsort(keys, kind="stable") if side is None else np.lexsort((side, keys))
    keys, members = keys[order], members[order]
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    sizes = np.diff(bounds)
    keep = sizes > 1  # a lone hash has no partner under this key
    rows = _ragged_arange(bounds[:-1][keep], sizes[keep])
    return members[rows], np.concatenate([[0], np.cumsum(sizes[keep])])


def _bucket_by(members: np.ndarray, owner: np.ndarray, vals: np.ndarray, part: int, side):
    """Re-bucket members by (their bucket, the bits of `part`): members, starts, and each new bucket's owner."""
    sub = vals[members] & np.uint64(part)
    order = np.lexsort((sub, owner)) if side is None else np.lexsort((side[members], sub, owner))
    members, owner, sub = members[order], owner[order], sub[order]
    change = np.r_[True, (owner[1:] != owner[:-1]) | (sub[1:] != sub[:-1]), True]
    bounds = np.flatnonzero(change)
    sizes = np.diff(bounds)
    keep = sizes > 1
    rows = _ragged_arange(bounds[:-1][keep], sizes[keep])
    return members[rows], np.concatenate([[0], np.cumsum(sizes[keep])]), owner[bounds[:-1][keep]]


def brute_force_pairs(hashes: np.ndarray, max_distance: int):
    """Reference all-pairs search, (i, j, dist) with i < j sorted (tests and the bench's recall check)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    block = max(1, (1 << 24) // max(1, len(hashes)))  # rows per step: a ~16 MB distance matrix
    out_i, out_j, out_d = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.uint8)]
    for s in range(0, len(hashes), block):
        dist = popcount64(hashes[s:s + block, None] ^ hashes[None, s:])
        i, j = np.nonzero((dist <= max_distance) & np.triu(np.ones(dist.shape, bool), k=1))
        out_i.append(i + s)
        out_j.append(j + s)
        out_d.append(dist[i, j])
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)
