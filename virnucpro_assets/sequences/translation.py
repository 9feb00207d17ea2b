"""Chunking plus six-frame translation and frame selection, byte-identical to the original.

Everything is vectorized over a whole shard: reads are concatenated into one byte buffer, chunks
are (offset, length) windows into it, laid out as rows of a byte matrix per strand, and every frame
of every chunk is translated with a handful of numpy operations on that matrix. Strings are assembled straight from offsets into
Arrow string arrays, so no per-codon and almost no per-read Python runs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from Bio.Data.CodonTable import unambiguous_dna_by_id

from virnucpro_assets.sequences.chunking import chunk_layout

FRAME_LABELS = ("F1", "F2", "F3", "R1", "R2", "R3")
COLUMNS = ("pair_id", "read_id", "chunk_id", "frame", "nucleotide", "protein")

_INVALID = 4
_BASE_CODE = np.full(256, _INVALID, dtype=np.uint8)
for _code, _letter in enumerate(b"ACGT"):
    _BASE_CODE[_letter] = _code


def _codon_table() -> np.ndarray:
    """Amino-acid byte for every triplet of base codes, indexed 25*c0 + 5*c1 + c2 with A=0, C=1,
    G=2, T=3 and 4 for any other letter; 0 where a triplet holds such a letter, '*' for stops."""
    standard = unambiguous_dna_by_id[1]
    table = np.zeros(125, dtype=np.uint8)
    for c0, c1, c2 in np.ndindex(4, 4, 4):
        codon = "ACGT"[c0] + "ACGT"[c1] + "ACGT"[c2]
        amino = "*" if codon in standard.stop_codons else standard.forward_table[codon]
        table[25 * c0 + 5 * c1 + c2] = ord(amino)
    return table


_AMINO_ACID = _codon_table()
_STOP = ord("*")
# Upper-case complement, as the original: A<->T, C<->G, every other letter unchanged (for str.translate).
COMPLEMENT = str.maketrans("ACGT", "TGCA")
_COMPLEMENT = np.arange(256, dtype=np.uint8)  # the same, as a byte lookup table
for _letter, _complement in COMPLEMENT.items():
    _COMPLEMENT[_letter] = _complement


def translate_reads(read_ids: list[str] | pa.Array, sequences: list[str] | pa.Array, chunk_length: int) -> pa.Table:
    """Chunk every read and keep the stop-free, non-empty frames of every chunk.

    Returns an Arrow table with COLUMNS, rows in read order, chunk order, then F1..F3, R1..R3.
    """
    sequences = _large_strings(sequences)
    read_ids = _large_strings(read_ids)
    read_offsets = np.frombuffer(sequences.buffers()[1], dtype=np.int64)[sequences.offset : sequences.offset + len(sequences) + 1]
    data = np.frombuffer(sequences.buffers()[2], dtype=np.uint8) if len(sequences) else np.zeros(0, np.uint8)
    data = data[read_offsets[0] : read_offsets[-1]]
    read_offsets = read_offsets - read_offsets[0]
    forward = np.frombuffer(data.tobytes().upper(), dtype=np.uint8)
    reverse = _COMPLEMENT[forward[::-1]]

    read_index, chunk_number, starts = chunk_layout(np.diff(read_offsets), chunk_length)
    chunk_lengths = np.minimum(starts + chunk_length, np.diff(read_offsets)[read_index]) - starts
    forward_starts = read_offsets[read_index] + starts
    # Chunk [a, b) of the forward buffer is, reverse-complemented, [T - b, T - a) of the reversed one.
    reverse_starts = forward.size - (forward_starts + chunk_lengths)

    pieces = []
    for strand, strand_starts, first_frame in ((forward, forward_starts, 0), (reverse, reverse_starts, 3)):
        letters = _chunk_matrix(strand, strand_starts, chunk_lengths)
        codes = _BASE_CODE[letters]
        # The amino acid of the triplet starting at every position; each frame takes every third.
        amino = _AMINO_ACID[codes[:, :-2] * 25 + codes[:, 1:-1] * 5 + codes[:, 2:]]
        for offset in range(3):
            pieces.append(_translate_frame(letters, amino[:, offset::3], chunk_lengths, offset) + (first_frame + offset,))

    chunk_of_row = np.concatenate([p[0] for p in pieces])
    frame_of_row = np.concatenate([np.full(p[0].size, p[-1], dtype=np.int8) for p in pieces])
    order = pa.array(np.lexsort((frame_of_row, chunk_of_row)))
    proteins = pa.concat_arrays([p[1] for p in pieces]).take(order)
    nucleotides = pa.concat_arrays([p[2] for p in pieces]).take(order)
    chunk_of_row = chunk_of_row[order.to_numpy()]
    frame_labels = pa.array(np.asarray(FRAME_LABELS)[frame_of_row[order.to_numpy()]], type=pa.large_string())

    read_id = read_ids.take(pa.array(read_index[chunk_of_row]))
    chunk_id = _concat(read_id, "_chunk_", pc.cast(pa.array(chunk_number[chunk_of_row] + 1), pa.large_string()))
    pair_id = _concat(chunk_id, "", frame_labels)
    return pa.table(
        [pair_id, read_id, chunk_id, frame_labels, nucleotides, proteins],
        names=list(COLUMNS),
    )


def _chunk_matrix(strand: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Chunks as rows of a [chunks, longest + 2] byte matrix, padded with a byte that is no base
    (the two extra columns let every position start a triplet)."""
    width = int(lengths.max()) + 2 if lengths.size else 2
    padded = np.concatenate([strand, np.zeros(width, dtype=np.uint8)])
    letters = np.lib.stride_tricks.sliding_window_view(padded, width)[starts]
    letters[:, -2:] = 0
    short = np.flatnonzero(lengths < width - 2)
    letters[short] *= np.arange(width)[None, :] < lengths[short, None]
    return letters


def _translate_frame(
    letters: np.ndarray, amino: np.ndarray, chunk_lengths: np.ndarray, offset: int
) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """Select and assemble one frame of every chunk from its codons' amino acids (0 = a codon with
    a letter other than A/C/G/T, including the padding past a chunk's end: the original drops those
    and reads only full triplets). Returns (kept chunk indices, proteins, nucleotides)."""
    valid = amino != 0
    protein_length = valid.sum(axis=1)
    has_stop = (amino == _STOP).any(axis=1)
    kept_chunks = np.flatnonzero((protein_length > 0) & ~has_stop)

    kept_lengths = protein_length[kept_chunks]
    kept_amino = amino[kept_chunks]
    proteins = _strings(kept_amino[kept_amino != 0], kept_lengths)
    # The original pairs protein p with strand[offset : offset + 1 + 3*len(p)], clipped to the chunk.
    nucleotide_lengths = np.minimum(3 * kept_lengths + 1, chunk_lengths[kept_chunks] - offset)
    window = letters[kept_chunks, offset:]
    in_window = np.arange(window.shape[1])[None, :] < nucleotide_lengths[:, None]
    nucleotides = _strings(window[in_window], nucleotide_lengths)
    return kept_chunks, proteins, nucleotides


def _large_strings(values: list[str] | pa.Array) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(pa.large_string())
    return pa.array(values, type=pa.large_string())


def _strings(data: np.ndarray, lengths: np.ndarray) -> pa.Array:
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.LargeStringArray.from_buffers(lengths.size, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data, dtype=np.uint8)))


def _concat(left: pa.Array, middle: str, right: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(left, right, pa.scalar(middle, pa.large_string()))
