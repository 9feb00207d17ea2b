"""The original's chunking arithmetic, vectorized over many reads at once.

A read of length L is cut into n = ceil(L / c) windows of up to c letters whose overlaps spread the
surplus n*c - L as the original does (see docs: virnucpro-algorithm.md, section 1). The shift list
there (k_up copies of `upper`, then lower, then 0) sums, over its first i entries, to
min(i, k_up) * upper + max(0, i - k_up) * lower for every i <= n - 1, which gives each start in
closed form.
"""

from __future__ import annotations

import numpy as np

SUPPORTED_CHUNK_LENGTHS = (300, 500)


def chunk_layout(lengths: np.ndarray, chunk_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For reads of the given (positive) lengths, return per chunk: the read's index, the chunk's
    0-based number within its read, and its start; chunks come in read order then chunk order.
    Chunk i of a read covers [start, min(start + chunk_length, L))."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and lengths.min() <= 0:
        raise ValueError("chunking needs non-empty reads")
    c = chunk_length
    n = -(-lengths // c)
    surplus = n * c - lengths
    lower = surplus // n
    upper = lower + 1
    k_up = surplus - lower * (n - 1)

    read_index = np.repeat(np.arange(lengths.size), n)
    first_chunk = np.cumsum(n) - n
    chunk_number = np.arange(read_index.size) - np.repeat(first_chunk, n)
    k = k_up[read_index]
    shift_sum = np.minimum(chunk_number, k) * upper[read_index] + np.maximum(chunk_number - k, 0) * lower[read_index]
    starts = chunk_number * c - shift_sum
    return read_index, chunk_number, starts
