"""Chunking plus six-frame translation and frame selection, byte-identical to the original.

Everything is vectorized over a whole shard: reads are concatenated into one byte buffer, chunks are
(offset, length) windows into it (overlapping windows share bytes), and every frame of every chunk
is translated with a handful of numpy operations. Strings are assembled straight from offsets into
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
    """Amino-acid byte for codon index 16*b0 + 4*b1 + b2 (A=0, C=1, G=2, T=3); stops are '*'."""
    standard = unambiguous_dna_by_id[1]
    table = np.zeros(64, dtype=np.uint8)
    for index in range(64):
        codon = "".join("ACGT"[(index >> shift) & 3] for shift in (4, 2, 0))
        table[index] = ord("*") if codon in standard.stop_codons else ord(standard.forward_table[codon])
    return table


_AMINO_ACID = _codon_table()
_STOP = ord("*")
# Upper-case complement, as the original: A<->T, C<->G, every other letter unchanged.
_COMPLEMENT = np.arange(256, dtype=np.uint8)
for _a, _b in (b"AT", b"TA", b"CG", b"GC"):
    _COMPLEMENT[_a] = _b


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
    for frame in range(6):
        strand, strand_starts = (forward, forward_starts) if frame < 3 else (reverse, reverse_starts)
        pieces.append(_translate_frame(strand, strand_starts, chunk_lengths, frame % 3) + (frame,))

    chunk_of_row = np.concatenate([p[0] for p in pieces])
    frame_of_row = np.concatenate([np.full(p[0].size, p[-1], dtype=np.int8) for p in pieces])
    order = np.lexsort((frame_of_row, chunk_of_row))
    proteins = pa.concat_arrays([p[1] for p in pieces]).take(pa.array(order))
    nucleotides = pa.concat_arrays([p[2] for p in pieces]).take(pa.array(order))
    chunk_of_row = chunk_of_row[order]
    frame_labels = pa.array(np.asarray(FRAME_LABELS)[frame_of_row[order]], type=pa.large_string())

    read_id = read_ids.take(pa.array(read_index[chunk_of_row]))
    chunk_id = _concat(read_id, "_chunk_", pa.array((chunk_number[chunk_of_row] + 1).astype(str), type=pa.large_string()))
    pair_id = _concat(chunk_id, "", frame_labels)
    return pa.table(
        [pair_id, read_id, chunk_id, frame_labels, nucleotides, proteins],
        names=list(COLUMNS),
    )


def _translate_frame(
    strand: np.ndarray, chunk_starts: np.ndarray, chunk_lengths: np.ndarray, offset: int
) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """Translate one frame of every chunk; return (kept chunk indices, proteins, nucleotides)."""
    codons_per_chunk = np.maximum(chunk_lengths - offset, 0) // 3
    codon_chunk = np.repeat(np.arange(chunk_starts.size), codons_per_chunk)
    codon_pos = _ranges(chunk_starts + offset, codons_per_chunk, step=3)
    b0, b1, b2 = (_BASE_CODE[strand[codon_pos + i]] for i in range(3))
    valid = np.maximum(np.maximum(b0, b1), b2) < _INVALID
    amino = _AMINO_ACID[(b0.astype(np.int16) * 16 + b1 * 4 + b2)[valid]]
    valid_chunk = codon_chunk[valid]

    protein_length = np.bincount(valid_chunk, minlength=chunk_starts.size)
    stops = np.bincount(valid_chunk[amino == _STOP], minlength=chunk_starts.size)
    kept = (protein_length > 0) & (stops == 0)
    kept_chunks = np.flatnonzero(kept)

    kept_lengths = protein_length[kept_chunks]
    proteins = _strings(amino[kept[valid_chunk]], kept_lengths)
    # The original pairs protein p with strand[offset : offset + 1 + 3*len(p)], clipped to the chunk.
    nucleotide_lengths = np.minimum(3 * kept_lengths + 1, chunk_lengths[kept_chunks] - offset)
    nucleotide_bytes = strand[_ranges(chunk_starts[kept_chunks] + offset, nucleotide_lengths, step=1)]
    nucleotides = _strings(nucleotide_bytes, nucleotide_lengths)
    return kept_chunks, proteins, nucleotides


def _large_strings(values: list[str] | pa.Array) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(pa.large_string())
    return pa.array(values, type=pa.large_string())


def _ranges(starts: np.ndarray, counts: np.ndarray, step: int) -> np.ndarray:
    """Concatenation of starts[i] + step * arange(counts[i]) over i."""
    total = int(counts.sum())
    first = np.cumsum(counts) - counts
    within = np.arange(total, dtype=np.int64) - np.repeat(first, counts)
    return np.repeat(starts, counts) + step * within


def _strings(data: np.ndarray, lengths: np.ndarray) -> pa.Array:
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.LargeStringArray.from_buffers(
        lengths.size, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data, dtype=np.uint8))
    )


def _concat(left: pa.Array, middle: str, right: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(left, right, pa.scalar(middle, pa.large_string()))
