"""Which samples a rank reads in an epoch, and in what order: pure functions of (seed, epoch).

order(seed, epoch) -> [group by modality length] -> pad to a multiple of world_size -> stride by rank.
The per-worker split is the DataLoader's: it deals whole batches of a rank round-robin to its workers.

Padding repeats the first positions of the order, as torch's DistributedSampler does, so every rank gets
the same number of samples and no rank waits at a collective. Grouping follows LLaVA's
`get_modality_length_grouped_indices` (docs/training.md §4): image and text-only samples are shuffled apart
into megabatches of one global batch, each sorted longest first; the full megabatches are shuffled and the
two leftovers go last. Striding a length-sorted megabatch by rank gives every rank a batch of similar
length, which is what LLaVA's `split_to_even_chunks` is for.
"""

from __future__ import annotations

import numpy as np

IMAGE_LENGTH = 700  # Imp (HEAD) counts an image as 700 words; LLaVA as 0, Imp v1 as 729


def modality_lengths(text_words: np.ndarray, has_image: np.ndarray) -> np.ndarray:
    """LLaVA's `modality_lengths`: words + 700 for image samples, minus words for text-only ones.

    A text-only sample with no words still gets -1, so the sign alone tells the modality.

    Example:
        >>> modality_lengths(np.array([5, 5, 0]), np.array([True, False, False])).tolist()
        [705, -5, -1]
    """
    words = np.asarray(text_words, dtype=np.int64)
    return np.where(np.asarray(has_image, dtype=bool), words + IMAGE_LENGTH, -np.maximum(words, 1))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """A permutation of range(n) that depends only on (seed, epoch).

    Example:
        >>> bool((epoch_order(5, 0, 1) == epoch_order(5, 0, 1)).all())
        True
    """
    return np.random.default_rng([seed, epoch]).permutation(n)


def group_by_modality(order: np.ndarray, lengths: np.ndarray, megabatch: int, seed: int, epoch: int) -> np.ndarray:
    """Reorder `order` into pure-modality megabatches sorted longest first, in shuffled megabatch order.

    Args:
        order: the epoch's permutation (shuffles each modality before chunking).
        lengths: `modality_lengths` per position; > 0 means the sample has an image.
        megabatch: samples per megabatch; one global batch (batch_size * world_size * grad_accum).
        seed, epoch: seed the megabatch shuffle.

    Returns:
        A permutation of `order`; only the tail (the two leftover megabatches) may mix modalities.
    """
    rng = np.random.default_rng([seed, epoch, 1])  # its own stream: the base order stays epoch_order's
    full, leftovers = [], []
    for image in (True, False):
        idx = order[(lengths[order] > 0) == image]
        for start in range(0, len(idx), megabatch):
            chunk = idx[start: start + megabatch]
            chunk = chunk[np.argsort(-np.abs(lengths[chunk]), kind="stable")]
            (full if len(chunk) == megabatch else leftovers).append(chunk)
    parts = [full[i] for i in rng.permutation(len(full))] + leftovers
    return np.concatenate(parts) if parts else order


def rank_positions(order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's positions: `order` padded with its own head to a multiple of world_size, then strided.

    Example:
        >>> [rank_positions(np.arange(5), r, 2).tolist() for r in (0, 1)]
        [[0, 2, 4], [1, 3, 0]]
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    total = -(-len(order) // world_size) * world_size
    padded = np.concatenate([order, np.resize(order, total - len(order))]) if len(order) else order
    return padded[rank::world_size]


def sample_order(n: int, *, seed: int, epoch: int, rank: int = 0, world_size: int = 1,
                 lengths: np.ndarray | None = None, megabatch: int | None = None) -> np.ndarray:
    """The positions rank `rank` reads in `epoch`, in order (grouped by modality when `lengths` is given).

    Example:
        >>> a = sample_order(10, seed=1, epoch=0, rank=0, world_size=2)
        >>> b = sample_order(10, seed=1, epoch=0, rank=1, world_size=2)
        >>> sorted(a.tolist() + b.tolist()) == list(range(10))
        True
    """
    order = epoch_order(n, seed, epoch)
    if lengths is not None:
        if megabatch is None or megabatch < 1:
            raise ValueError("modality grouping needs megabatch >= 1 (batch_size * world_size * grad_accum)")
        order = group_by_modality(order, np.asarray(lengths), megabatch, seed, epoch)
    return rank_positions(order, rank, world_size)
