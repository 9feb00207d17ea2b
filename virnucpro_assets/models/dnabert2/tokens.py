"""DNABERT-S token ids of nucleotide strings: computed on the host, kept flat, stored as an Arrow table.

Tokenizing is the embedder's only host work that grows with the input (Hugging Face's Rust BPE
plus a Python list of ids per sequence); done in the GPU step it runs beside the device and slows
it. A `TokenTable` lets a CPU step tokenize ahead of time, and the GPU step take the ids as they are.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import tokenizers

from virnucpro_assets.errors import CorruptDataError

SEQUENCE_COLUMN = "nucleotide"
TOKEN_IDS_COLUMN = "token_ids"


@dataclass(frozen=True)
class TokenizedSequences:
    ids: np.ndarray  # int64 token ids of all sequences, concatenated
    starts: np.ndarray  # where each sequence begins in `ids`
    lengths: np.ndarray  # tokens per sequence, [CLS] and [SEP] included

    @property
    def token_counts(self) -> np.ndarray:
        return self.lengths

    @classmethod
    def from_lists(cls, token_ids: Sequence[Sequence[int]]) -> TokenizedSequences:
        lengths = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(token_ids))
        ids = np.fromiter(itertools.chain.from_iterable(token_ids), dtype=np.int64, count=int(lengths.sum()))
        return cls(ids, np.cumsum(lengths) - lengths, lengths)

    def rows(self, rows: np.ndarray) -> TokenizedSequences:
        """The sequences `rows`, in that order, laid out anew (contiguous)."""
        lengths = self.lengths[rows]
        starts = np.cumsum(lengths) - lengths
        within = np.arange(int(lengths.sum())) - np.repeat(starts, lengths)
        return TokenizedSequences(self.ids[np.repeat(self.starts[rows], lengths) + within], starts, lengths)


def tokenize(tokenizer: tokenizers.Tokenizer, sequences: Sequence[str]) -> TokenizedSequences:
    """Token ids per sequence, [CLS] ... [SEP], unpadded and untruncated (the tokenizer as
    `load_dnabert_tokenizer` sets it up)."""
    # The fast variant skips character offsets, which nothing here uses; the ids are the same.
    return TokenizedSequences.from_lists([encoding.ids for encoding in tokenizer.encode_batch_fast(list(sequences))])


@dataclass(frozen=True)
class TokenTable:
    """Distinct nucleotide strings and their token ids, one row each."""

    sequences: list[str]
    tokens: TokenizedSequences

    @classmethod
    def of(cls, tokenizer: tokenizers.Tokenizer, sequences: Sequence[str]) -> TokenTable:
        sequences = list(sequences)
        return cls(sequences, tokenize(tokenizer, sequences))

    def to_arrow(self) -> pa.Table:
        offsets = np.concatenate([[0], np.cumsum(self.tokens.lengths)]).astype(np.int32)
        ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(self.tokens.ids.astype(np.int32)))
        return pa.table({SEQUENCE_COLUMN: pa.array(self.sequences, pa.string()), TOKEN_IDS_COLUMN: ids})

    @classmethod
    def from_arrow(cls, table: pa.Table) -> TokenTable:
        ids = table.column(TOKEN_IDS_COLUMN).combine_chunks()
        offsets = ids.offsets.to_numpy().astype(np.int64)
        lengths = np.diff(offsets)
        flat = ids.values.to_numpy().astype(np.int64)[offsets[0] : offsets[-1]] if len(ids) else np.zeros(0, np.int64)
        return cls(table.column(SEQUENCE_COLUMN).to_pylist(), TokenizedSequences(flat, offsets[:-1] - offsets[0], lengths))

    def for_sequences(self, sequences: Sequence[str], source: str = "the token table") -> TokenizedSequences:
        """The token ids of `sequences`, in their order; every one must be in the table (else
        CorruptDataError naming `source`: it was made from other sequences than these)."""
        if list(sequences) == self.sequences:
            return self.tokens
        index = {sequence: row for row, sequence in enumerate(self.sequences)}
        try:
            rows = np.fromiter((index[sequence] for sequence in sequences), dtype=np.int64, count=len(sequences))
        except KeyError as missing:
            sequence = missing.args[0]
            shown = sequence if len(sequence) <= 60 else f"{sequence[:60]}... ({len(sequence)} letters)"
            raise CorruptDataError(
                f"{source} has no token ids for the nucleotide string {shown}: it was made from other pairs "
                "than these; materialize it again"
            ) from None
        return self.tokens.rows(rows)
