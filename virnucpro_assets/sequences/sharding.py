"""Splitting one reads file into K shards, deterministically and all-or-nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from virnucpro_assets.errors import InputFormatError
from virnucpro_assets.sequences.reads import ReadStats, read_batches

READ_SCHEMA = pa.schema([("read_id", pa.large_string()), ("sequence", pa.large_string())])


def shard_of_reads(first_read: int, count: int, shards: int) -> pa.Array:
    """Read i of a file (0-based, empty records not counted) goes to shard i mod K: the same file
    always gives the same shards, shards are balanced to one read, and file order holds within each."""
    return pa.array((np.arange(first_read, first_read + count) % shards).astype(np.int32))


def file_positions(shard_index: int, rows: int, shards: int) -> pa.Array:
    """The 0-based file position of each read of shard `shard_index`, row by row (the inverse of
    `shard_of_reads`): row j of shard k is read j*K + k."""
    return pa.array(np.arange(rows, dtype=np.int64) * shards + shard_index)


def split_reads(
    source: Path, shards: int, *, expected_sha256: str | None = None, sample: str | None = None, progress=None
) -> tuple[list[pa.Table], ReadStats]:
    """Validate every read of `source` and spread them over `shards` tables (read_id, sequence).

    Raises InputFormatError, and returns nothing, unless the whole file is valid and, given
    `expected_sha256`, has the content it was registered with (hashed in the same pass that reads
    it). `progress(reads_so_far)` is called after each batch."""
    stats = ReadStats()
    parts: list[list[pa.Table]] = [[] for _ in range(shards)]
    for batch in read_batches(source, stats, expected_sha256=expected_sha256, sample=sample):
        table = pa.table([pa.array(batch.ids, pa.large_string()), pa.array(batch.sequences, pa.large_string())], schema=READ_SCHEMA)
        shard = shard_of_reads(stats.reads - len(batch.ids), len(batch.ids), shards)
        for index in range(shards):
            parts[index].append(table.filter(pc.equal(shard, index)))
        if progress is not None:
            progress(stats.reads)
    tables = [pa.concat_tables(part).combine_chunks() if part else READ_SCHEMA.empty_table() for part in parts]
    _refuse_duplicate_ids(source, pa.chunked_array([t.column("read_id").combine_chunks() for t in tables], pa.large_string()), shards)
    return tables, stats


def _refuse_duplicate_ids(source: Path, ids_by_shard: pa.ChunkedArray, shards: int) -> None:
    counts = pc.value_counts(ids_by_shard)
    repeated = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return
    first = repeated[0]["values"].as_py()
    # Row j of shard k is read j*K + k of the file (1-based here).
    positions = []
    for index, chunk in enumerate(ids_by_shard.chunks):
        rows = pc.indices_nonzero(pc.equal(chunk, first)).to_numpy()
        positions.extend((rows * shards + index + 1).tolist())
    positions.sort()
    raise InputFormatError(
        f"{source}: read id {first!r} occurs {len(positions)} times (reads {', '.join(map(str, positions[:5]))}); "
        f"read ids must be unique ({len(repeated)} ids are repeated in all)"
    )
