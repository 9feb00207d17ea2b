"""The original's training-frame selection (`identify_seq(..., istraindata=True)`).

Genomes are chunked and translated exactly as reads are in prediction
(virnucpro_assets.sequences.translation), then two more rules apply:

- a chunk holding any of N R Y M K S W H B V D (after upper-casing) is dropped whole; other
  letters outside ACGT (X, U, -, ...) are not checked there and only drop their codons, as in
  prediction;
- a stop-free frame is kept only if its protein occurs, as a substring, in one of the CDS
  translations annotated on the same GenBank record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from virnucpro_assets.sequences.chunking import chunk_layout
from virnucpro_assets.sequences.translation import translate_reads
from virnucpro_assets.training.genbank import GenomeRecord

AMBIGUITY_LETTERS = "NRYMKSWHBVD"
_AMBIGUOUS = np.zeros(256, dtype=bool)
_AMBIGUOUS[np.frombuffer(AMBIGUITY_LETTERS.encode(), dtype=np.uint8)] = True
# Joins a record's CDS proteins into one string: no protein holds it, so a frame's protein is a
# substring of the joined string exactly when it is a substring of one of them.
_SEPARATOR = "\n"


@dataclass(frozen=True)
class FrameCounts:
    chunks: int
    ambiguous_chunks: int
    stop_free_frames: int
    kept_frames: int


def training_frames(records: Sequence[GenomeRecord], chunk_length: int) -> tuple[pa.Table, FrameCounts]:
    """The kept (nucleotide, protein) pairs of `records`, with the columns and row order of
    translated_proteins (read_id is the record id), and what was dropped on the way."""
    ids = [record.record_id for record in records]
    sequences = [record.sequence for record in records]
    frames = translate_reads(ids, sequences, chunk_length)
    ambiguous = _ambiguous_chunk_ids(ids, sequences, chunk_length)
    chunk_count = sum(-(-len(s) // chunk_length) for s in sequences)

    references = {record.record_id: _SEPARATOR.join(record.cds_proteins) for record in records}
    chunk_ids = frames.column("chunk_id").to_pylist()
    read_ids = frames.column("read_id").to_pylist()
    proteins = frames.column("protein").to_pylist()
    keep = np.fromiter(
        (chunk not in ambiguous and protein in references[record] for chunk, record, protein in zip(chunk_ids, read_ids, proteins)),
        dtype=bool,
        count=frames.num_rows,
    )
    kept = frames.filter(pa.array(keep))
    counts = FrameCounts(
        chunks=chunk_count,
        ambiguous_chunks=len(ambiguous),
        stop_free_frames=frames.num_rows,
        kept_frames=kept.num_rows,
    )
    return kept, counts


def _ambiguous_chunk_ids(ids: Sequence[str], sequences: Sequence[str], chunk_length: int) -> set[str]:
    """The ids (`<record>_chunk_<i>`) of the chunks that hold an ambiguity letter."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    read_index, chunk_number, starts = chunk_layout(lengths, chunk_length)
    ambiguous: set[str] = set()
    for record in np.unique(read_index):
        letters = np.frombuffer(sequences[record].upper().encode("ascii", "replace"), dtype=np.uint8)
        # Ambiguity letters before each position: a chunk [a, b) holds one iff the counts differ.
        before = np.concatenate([[0], np.cumsum(_AMBIGUOUS[letters])])
        if before[-1] == 0:
            continue
        mine = read_index == record
        begin = starts[mine]
        end = np.minimum(begin + chunk_length, lengths[record])
        for number in chunk_number[mine][before[end] > before[begin]]:
            ambiguous.add(f"{ids[record]}_chunk_{number + 1}")
    return ambiguous


def labelled(table: pa.Table, label: int, source: str, group: str, record_numbers: dict[str, int]) -> pa.Table:
    """Training pairs with their class (1 virus, 0 others), GenBank file, group, and each pair's
    place in the training set (`record_number` of its record in the set, `row` within it), which
    restores the set's order once its shards are put together."""
    rows = table.num_rows
    numbers = np.array([record_numbers[r] for r in table.column("read_id").to_pylist()], dtype=np.int64)
    first = np.searchsorted(numbers, numbers, side="left") if rows else numbers
    return (
        table.append_column("label", pa.array(np.full(rows, label, dtype=np.int8)))
        .append_column("source", pa.array([source] * rows, pa.string()))
        .append_column("group", pa.array([group] * rows, pa.string()))
        .append_column("record_number", pa.array(numbers))
        .append_column("row", pa.array(np.arange(rows, dtype=np.int64) - first))
    )


def genome_of(table: pa.Table) -> pa.Array:
    """Each pair's genome, for a split by genome: its GenBank file and record."""
    return pc.binary_join_element_wise(table.column("source"), table.column("read_id"), "/")
