"""Near-duplicate search over 64-bit perceptual hashes, sub-quadratic: multi-index hashing.

Split each hash into m = d + k blocks; two hashes within Hamming distance d differ in at most d blocks,
so they agree exactly on at least k of them (pigeonhole). Every choice of k blocks is a key (k = 2 gives
~21-bit keys for d = 4: few random collisions); candidates are pairs sharing a key — found by sorting
each key column once — and each candidate is verified with a popcount. Vectorised with numpy: no Python loop per
hash. Very common block values (blank or flat images all hash alike) make buckets quadratic; buckets are
processed in slices so memory stays bounded, and their pairs are still all verified (recall is exact).
"""

from __future__ import annotations

import itertools

import numpy as np

_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def phash_to_uint64(value: str) -> int:
    """imagehash's 16-hex-digit phash as an unsigned 64-bit integer.

    Example:
        >>> phash_to_uint64("8000000000000001")
        9223372036854775809
    """
    return int(value, 16)


def phashes_to_array(values) -> np.ndarray:
    return np.array([int(v, 16) for v in values], dtype=np.uint64)


def popcount64(x: np.ndarray) -> np.ndarray:
    """Bit counts of uint64 values (byte-table lookup, vectorised)."""
    return _POP8[x.view(np.uint8).reshape(-1, 8)].sum(axis=1, dtype=np.uint8) if x.size else np.zeros(0, np.uint8)


def _blocks(bits: int, parts: int) -> list[tuple[int, int]]:
    """(shift, width) of `parts` contiguous blocks covering `bits` bits."""
    widths = [bits // parts + (i < bits % parts) for i in range(parts)]
    out, shift = [], 0
    for w in widths:
        out.append((shift, w))
        shift += w
    return out


def _pairs_sharing(keys_a: np.ndarray, keys_b: np.ndarray | None, slice_pairs: int):
    """Yield index pairs (i in a, j in b) with equal keys; with b None, pairs i < j within a."""
    if keys_b is None:
        order = np.argsort(keys_a, kind="stable")
        sk = keys_a[order]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        sizes = np.diff(np.r_[starts, len(sk)])
        for size in np.unique(sizes[sizes > 1]):
            group_starts = starts[sizes == size]
            ii, jj = np.triu_indices(size, k=1)
            step = max(1, slice_pairs // len(ii))
            for g in range(0, len(group_starts), step):
                base = group_starts[g: g + step][:, None]
                yield order[(base + ii).ravel()], order[(base + jj).ravel()]
        return
    order_b = np.argsort(keys_b, kind="stable")
    sb = keys_b[order_b]
    lo = np.searchsorted(sb, keys_a, side="left")
    hi = np.searchsorted(sb, keys_a, side="right")
    counts = hi - lo
    for size in np.unique(counts[counts > 0]):
        qa = np.flatnonzero(counts == size)
        step = max(1, slice_pairs // size)
        for g in range(0, len(qa), step):
            q = qa[g: g + step]
            cols = (lo[q][:, None] + np.arange(size)[None, :]).ravel()
            yield np.repeat(q, size), order_b[cols]


class HashIndex:
    """An index over uint64 hashes answering "which pairs are within Hamming distance d"."""

    def __init__(self, hashes: np.ndarray, max_distance: int, *, k: int = 2, slice_pairs: int = 4_000_000):
        self.hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        self.d = int(max_distance)
        self.slice_pairs = slice_pairs
        blocks = _blocks(64, self.d + k)
        self.keys = [[blocks[b] for b in combo] for combo in itertools.combinations(range(len(blocks)), k)]

    @staticmethod
    def _key(hashes: np.ndarray, blocks: list[tuple[int, int]]) -> np.ndarray:
        """The chosen blocks of every hash, packed into one integer (a mask keeps them in place)."""
        mask = 0
        for shift, width in blocks:
            mask |= ((1 << width) - 1) << shift
        return hashes & np.uint64(mask)

    def _collect(self, pair_iter, a: np.ndarray, b: np.ndarray):
        found_i, found_j, found_d = [], [], []
        for i, j in pair_iter:
            dist = popcount64(a[i] ^ b[j])
            keep = dist <= self.d
            found_i.append(i[keep])
            found_j.append(j[keep])
            found_d.append(dist[keep])
        return found_i, found_j, found_d

    @staticmethod
    def _unique(i_parts, j_parts, d_parts):
        if not i_parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8)
        i, j, d = np.concatenate(i_parts), np.concatenate(j_parts), np.concatenate(d_parts)
        if not len(i):
            return i.astype(np.int64), j.astype(np.int64), d
        key = i.astype(np.int64) * (1 << 32) + j.astype(np.int64)  # a pair shared by several blocks once
        _, first = np.unique(key, return_index=True)
        return i[first].astype(np.int64), j[first].astype(np.int64), d[first]

    def self_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All pairs i < j with distance <= d, sorted by (i, j)."""
        parts = ([], [], [])
        for blocks in self.keys:
            keys = self._key(self.hashes, blocks)
            pi, pj, pd = self._collect(_pairs_sharing(keys, None, self.slice_pairs), self.hashes, self.hashes)
            for store, new in zip(parts, (pi, pj, pd)):
                store += new
        i, j, d = self._unique(*parts)
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        return self._unique([lo], [hi], [d])

    def query(self, other: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (query index, index position, distance) with distance <= d."""
        other = np.ascontiguousarray(other, dtype=np.uint64)
        parts = ([], [], [])
        for blocks in self.keys:
            pairs = _pairs_sharing(self._key(other, blocks), self._key(self.hashes, blocks), self.slice_pairs)
            pi, pj, pd = self._collect(pairs, other, self.hashes)
            for store, new in zip(parts, (pi, pj, pd)):
                store += new
        return self._unique(*parts)


def brute_force_pairs(hashes: np.ndarray, max_distance: int) -> set[tuple[int, int]]:
    """Reference all-pairs search (tests and the bench's recall check)."""
    out = set()
    for i in range(len(hashes)):
        dist = popcount64(hashes[i] ^ hashes[i + 1:])
        out.update((i, i + 1 + int(k)) for k in np.flatnonzero(dist <= max_distance))
    return out
