"""The loop both embedders run: token-budget batches, out-of-memory halving, a float32 redo of
non-finite half-precision vectors, and progress reports.

The model-specific parts (tokenizing, the token budget, one batch through the model, switching to
float32) come from the embedder, as a `BatchedModel`. The GPU does not wait for the host: while it
runs one chunk's batches the next chunk is tokenized on a background thread, each batch's vectors
come back to pinned memory without waiting, and the host only waits for the device once, at the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

import numpy as np
import torch

from virnucpro_assets.models.batching import token_budget_batches
from virnucpro_assets.models.embeddings import Embeddings

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 10.0

# on_progress(done_sequences, total_sequences, tokens_done); tokens exclude padding.
ProgressCallback = Callable[[int, int, int], None]


class Tokenized(Protocol):
    token_counts: np.ndarray  # tokens fed to the model per sequence, padding excluded


class TokenizedRows(Tokenized, Protocol):
    """Tokenized input given ahead of time (`pretokenized`), from which chunks are taken."""

    def rows(self, rows: np.ndarray) -> Tokenized:
        """The sequences `rows`, in that order."""


TokenizedT = TypeVar("TokenizedT", bound=Tokenized)


class BatchedModel(Protocol[TokenizedT]):
    device: torch.device
    dtype: torch.dtype
    dim: int

    def tokenized(self, sequences: list[str]) -> TokenizedT:
        """The sequences tokenized for the model (raises ValueError naming a sequence it cannot take)."""

    def batch_token_budget(self, tokens: TokenizedT) -> int:
        """Tokens per batch, padding included, when the caller gives no budget."""

    def embed_batch(self, tokens: TokenizedT, batch: np.ndarray) -> torch.Tensor:
        """float32 mean vectors [len(batch), dim] of the rows `batch` of `tokens`, left on the device."""

    def in_float32(self) -> AbstractContextManager[None]:
        """For the block, embed_batch computes in float32."""


def embed_in_batches(
    model: BatchedModel,
    sequences: Sequence[str],
    token_budget: int | None = None,
    chunk_size: int | None = None,
    on_progress: ProgressCallback | None = None,
    clock: Callable[[], float] = time.monotonic,
    pretokenized: TokenizedRows | None = None,
) -> Embeddings:
    """Embed `sequences` in length-sorted batches of at most `token_budget` tokens, padding included
    (None: the model's `batch_token_budget`), tokenized `chunk_size` at a time (None: all at once),
    or already tokenized as `pretokenized` (one row per sequence, in order: the same chunks, taken
    from it).
    Vectors come back in input order; in half precision, any that is not finite is computed again
    in float32.

    `on_progress(done_sequences, total_sequences, tokens_done)` is called whenever PROGRESS_INTERVAL_S
    of `clock` have passed since the start or the last call (not at the start, nor necessarily at
    the end). A sequence counts as done once its batch is handed to the device, which runs at most a
    few batches behind."""
    sequences = list(sequences)
    total = len(sequences)
    if pretokenized is not None and len(pretokenized.token_counts) != total:
        raise ValueError(f"{len(pretokenized.token_counts)} tokenized sequences given for {total} sequences")
    chunk_size = chunk_size or max(total, 1)
    chunk_starts = range(0, total, chunk_size)
    on_gpu = model.device.type == "cuda"
    in_batch_order = torch.empty((total, model.dim), pin_memory=on_gpu)
    progress = _Progress(on_progress, total, clock) if on_progress else None
    rows, chunks, filled = [], [], 0

    def chunk(start: int) -> Tokenized:
        if pretokenized is not None:
            return pretokenized.rows(np.arange(start, min(start + chunk_size, total)))
        return model.tokenized(sequences[start : start + chunk_size])

    with ThreadPoolExecutor(1) as background:
        tokenized = background.map(chunk, chunk_starts)
        for start, tokens in zip(chunk_starts, tokenized):
            chunks.append((start, tokens))
            budget = token_budget or model.batch_token_budget(tokens)
            for batch in token_budget_batches(tokens.token_counts, budget):
                in_batch_order[filled : filled + len(batch)].copy_(embed_halving_on_oom(model, tokens, batch), non_blocking=True)
                rows.append(start + batch)
                filled += len(batch)
                if progress:
                    progress.advance(len(batch), int(tokens.token_counts[batch].sum()))
    if on_gpu:
        torch.cuda.synchronize(model.device)
    vectors = np.zeros((total, model.dim), dtype=np.float32)
    if rows:
        vectors[np.concatenate(rows)] = in_batch_order.numpy()
    if model.dtype != torch.float32:
        _redo_non_finite_in_float32(model, vectors, chunks, token_budget)
    return Embeddings(vectors=vectors, tokens=int(sum(tokens.token_counts.sum() for _, tokens in chunks)))


def embed_halving_on_oom(model: BatchedModel, tokens: Tokenized, batch: np.ndarray) -> torch.Tensor:
    """model.embed_batch, splitting the batch in two (and so on) when the device runs out of memory;
    a single sequence that does not fit raises."""
    try:
        return model.embed_batch(tokens, batch)
    except torch.cuda.OutOfMemoryError:
        if len(batch) == 1:
            raise
    # Split outside the except block, so that the failed attempt's tensors are freed first.
    torch.cuda.empty_cache()
    half = len(batch) // 2
    return torch.cat([embed_halving_on_oom(model, tokens, part) for part in (batch[:half], batch[half:])])


def _redo_non_finite_in_float32(
    model: BatchedModel, vectors: np.ndarray, chunks: list[tuple[int, Tokenized]], token_budget: int | None
) -> None:
    redo = []
    for start, tokens in chunks:
        non_finite = np.flatnonzero(~np.isfinite(vectors[start : start + len(tokens.token_counts)]).all(axis=1))
        if non_finite.size:
            redo.append((start, tokens, non_finite))
    if not redo:
        return
    logger.warning(
        "%d of %d sequences gave non-finite vectors in %s; recomputing them in float32",
        sum(non_finite.size for _, _, non_finite in redo),
        len(vectors),
        model.dtype,
    )
    with model.in_float32():
        for start, tokens, non_finite in redo:
            budget = token_budget or model.batch_token_budget(tokens)
            for batch in token_budget_batches(tokens.token_counts[non_finite], budget):
                rows = non_finite[batch]
                vectors[start + rows] = embed_halving_on_oom(model, tokens, rows).cpu().numpy()


class _Progress:
    def __init__(self, on_progress: ProgressCallback, total: int, clock: Callable[[], float]):
        self.on_progress = on_progress
        self.total = total
        self.clock = clock
        self.last_report = clock()
        self.sequences = 0
        self.tokens = 0

    def advance(self, sequences: int, tokens: int) -> None:
        self.sequences += sequences
        self.tokens += tokens
        now = self.clock()
        if now - self.last_report >= PROGRESS_INTERVAL_S:
            self.last_report = now
            self.on_progress(self.sequences, self.total, self.tokens)
