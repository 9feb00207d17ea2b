"""Splitting one reads file into K shards, deterministically and all-or-nothing."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from virnucpro_assets.errors import InputFormatError
from virnucpro_assets.sequences.reads import ReadStats, read_batches
from virnucpro_assets.sequences.translation import COMPLEMENT

READ_SCHEMA = pa.schema([("read_id", pa.large_string()), ("sequence", pa.large_string()), ("file_position", pa.int64())])

# Reads between two progress reports: the parser gives them a few thousand at a time.
PROGRESS_READS = 250_000
# splitmix64's finalizer: every input bit moves about half of the output bits.
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def shard_of_reads(sequences: Sequence[str], shards: int) -> np.ndarray:
    """The shard of each read: a hash of its `strand_key` mod K. Reads that give the same pairs
    share a shard, so that the embedding assets embed those pairs once: identical reads, reads
    that differ only in case, and a read and its reverse complement (the same molecule read from
    the other strand: its forward frames are the other's reverse frames). The same file always
    gives the same shards; each distinct key lands on a shard at random, so shards are balanced by
    distinct sequences (the GPU's work) to about sqrt(n/K) of n/K, while a sequence repeated many
    times is all on one shard."""
    return (sequence_hashes([strand_key(sequence) for sequence in sequences]) % np.uint64(shards)).astype(np.int32)


def strand_key(sequence: str) -> str:
    """The read as translation sees it (upper-cased), whichever strand it was read from: the lesser
    of it and its reverse complement."""
    upper = sequence.upper()
    return min(upper, upper.translate(COMPLEMENT)[::-1])


def sequence_hashes(sequences: Sequence[str]) -> np.ndarray:
    """A 64-bit hash of each sequence, the same on every machine and in every run (Python's hash()
    is salted per process): its CRC-32 (about 1 us a read), mixed so that all bits count mod K."""
    z = np.fromiter((zlib.crc32(sequence.encode()) for sequence in sequences), dtype=np.uint64, count=len(sequences))
    z = (z ^ (z >> np.uint64(30))) * _MIX[0]
    z = (z ^ (z >> np.uint64(27))) * _MIX[1]
    return z ^ (z >> np.uint64(31))


def split_reads(
    source: Path, shards: int, *, expected_sha256: str | None = None, sample: str | None = None, progress=None
) -> tuple[list[pa.Table], ReadStats]:
    """Validate every read of `source` and spread them over `shards` tables (read_id, sequence, file_position).

    Each read goes to `shard_of_reads` of its sequence, in file order within its shard, with its
    0-based position in the file (empty records not counted) as `file_position`, by which the
    sample's report puts the reads back in file order.

    Raises InputFormatError, and returns nothing, unless the whole file is valid and, given
    `expected_sha256`, has the content it was registered with (hashed in the same pass that reads
    it). `progress(reads_so_far)` is called each time another PROGRESS_READS reads have been read."""
    stats = ReadStats()
    parts: list[list[pa.Table]] = [[] for _ in range(shards)]
    reported = 0
    for batch in read_batches(source, stats, expected_sha256=expected_sha256, sample=sample):
        first = stats.reads - len(batch.ids)
        sequences = pa.array(batch.sequences, pa.large_string())
        positions = pa.array(np.arange(first, stats.reads, dtype=np.int64))
        table = pa.table([pa.array(batch.ids, pa.large_string()), sequences, positions], schema=READ_SCHEMA)
        shard = shard_of_reads(batch.sequences, shards)
        by_shard = table.take(np.argsort(shard, kind="stable"))  # stable: file order within each shard
        ends = np.cumsum(np.bincount(shard, minlength=shards))
        for index in range(shards):
            start = ends[index - 1] if index else 0
            parts[index].append(by_shard.slice(start, ends[index] - start))
        if progress is not None and stats.reads - reported >= PROGRESS_READS:
            reported = stats.reads
            progress(stats.reads)
    tables = [pa.concat_tables(part).combine_chunks() if part else READ_SCHEMA.empty_table() for part in parts]
    _refuse_duplicate_ids(source, pa.concat_tables(tables))
    return tables, stats


def _refuse_duplicate_ids(source: Path, reads: pa.Table) -> None:
    counts = pc.value_counts(reads.column("read_id"))
    repeated = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return
    first = repeated[0]["values"].as_py()
    positions = sorted((pc.filter(reads.column("file_position"), pc.equal(reads.column("read_id"), first)).to_numpy() + 1).tolist())
    raise InputFormatError(
        f"{source}: read id {first!r} occurs {len(positions)} times (reads {', '.join(map(str, positions[:5]))}); "
        f"read ids must be unique ({len(repeated)} ids are repeated in all)"
    )
