"""Each distinct sequence embedded once: the work an embedder must do for a column of sequences, and
its vectors handed back to every row that repeats a sequence.

Samples repeat sequences (PCR and optical duplicates, viruses at high coverage, amplicons). A model
gives one sequence the same vector whatever else is in its batch (up to the last float bits, which
batch composition can move), so embedding a repeat again only costs GPU time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from virnucpro_assets.models.embeddings import Embeddings
from virnucpro_assets.storage.embedding_cache import EmbeddingCache


@dataclass(frozen=True)
class DistinctSequences:
    sequences: list[str]  # each distinct sequence once, in order of first occurrence
    inverse: np.ndarray  # int64 [rows]: for every row of the input, its sequence's index in `sequences`

    @property
    def rows(self) -> int:
        return len(self.inverse)

    def expand(self, vectors: np.ndarray) -> np.ndarray:
        """Vectors of `sequences` [distinct, dim] -> vectors of every input row [rows, dim]."""
        if len(vectors) != len(self.sequences):
            raise ValueError(f"{len(vectors)} vectors for {len(self.sequences)} distinct sequences")
        return np.take(vectors, self.inverse, axis=0)


def distinct_sequences(column: pa.Array | pa.ChunkedArray) -> DistinctSequences:
    """The distinct strings of `column` in order of first occurrence (so the embedder's input, and
    with it its batches, is deterministic) and each row's index among them."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        raise ValueError(f"{column.null_count} of {len(column)} sequences are missing (null)")
    # Arrow's hash table: the dictionary comes out in order of first occurrence.
    encoded = column.dictionary_encode()
    return DistinctSequences(encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64))


def embed_distinct(
    embed: Callable[[list[str]], Embeddings], distinct: DistinctSequences, cache: EmbeddingCache | None = None
) -> Embeddings:
    """`embed` (an embedder's `embed` with its options bound) run on `distinct.sequences`: one vector
    per distinct sequence (`distinct.expand` gives every row its own), `tokens` counts what was
    embedded. Only this needs the device: finding the distinct sequences and expanding their vectors
    to the rows are the host's work, done before and after the step holds its GPU.

    With a `cache` (of this model and precision): the distinct sequences found there are not
    embedded, the others are, in order of first occurrence, and are added to it (`cache.stats`
    counts hits and misses)."""
    if cache is None:
        return embed(distinct.sequences)
    found = cache.lookup(distinct.sequences)
    misses = found.misses
    result = embed([distinct.sequences[index] for index in misses])
    cache.add(found, result.vectors)
    if len(misses) == len(distinct.sequences):  # nothing found: the embedder's vectors as they are
        return result
    vectors = found.vectors
    vectors[misses] = result.vectors
    return Embeddings(vectors=vectors, tokens=result.tokens)


def embed_rows(
    embed: Callable[[list[str]], Embeddings], column: pa.Array | pa.ChunkedArray, cache: EmbeddingCache | None = None
) -> tuple[Embeddings, DistinctSequences]:
    """embed_distinct over the distinct sequences of `column`, with one vector per row of `column`
    (the three stages at once, where nothing holds a device in between: benchmarks, tests)."""
    distinct = distinct_sequences(column)
    result = embed_distinct(embed, distinct, cache)
    return Embeddings(vectors=distinct.expand(result.vectors), tokens=result.tokens), distinct
