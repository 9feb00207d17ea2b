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


def memory_token_budget(device, bytes_per_token: int, ceiling: int, share: float = 0.5) -> int:
    """Tokens per batch on a CUDA device: what `share` of its free memory (what the driver has free
    plus what PyTorch holds unused) fits at `bytes_per_token` of activations, at most `ceiling`.
    Called once the weights are loaded, so that they are not counted as free."""
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return max(1, min(ceiling, int(free * share) // bytes_per_token))


def ragged_rows(
    values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, rows: np.ndarray, fill: int, width: int, column: int = 0
) -> np.ndarray:
    """Rows `rows` of a ragged array (row i is values[starts[i] : starts[i] + lengths[i]]) laid into a
    [len(rows), width] array from `column` on; every other cell is `fill`. Vectorized: no Python loop
    per row, so that batches are built faster than the GPU consumes them."""
    picked = lengths[rows]
    out = np.full((len(rows), width), fill, dtype=values.dtype)
    within = np.arange(int(picked.sum())) - np.repeat(np.cumsum(picked) - picked, picked)
    out[np.repeat(np.arange(len(rows)), picked), within + column] = values[np.repeat(starts[rows], picked) + within]
    return out
