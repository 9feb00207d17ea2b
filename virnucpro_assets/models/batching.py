"""Length-sorted batches under a token budget, shared by both embedding models."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def token_budget_batches(lengths: Sequence[int], token_budget: int) -> Iterator[np.ndarray]:
    """Yield index arrays into `lengths`, longest first, so that each batch padded to its
    longest member holds at most `token_budget` tokens (a single over-long item gets a batch of its own).

    Sorting by length keeps padding small; the caller scatters results back by index.
    """
    if token_budget < 1:
        raise ValueError(f"token budget must be positive, got {token_budget}")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        size = max(1, token_budget // max(longest, 1))
        yield order[start : start + size]
        start += size
