"""Splitting one reads file into K Parquet shards, deterministically and all-or-nothing."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from virnucpro_assets.errors import InputFormatError
from virnucpro_assets.sequences.reads import ReadStats, read_batches
from virnucpro_assets.storage.store import atomic_path

READ_SCHEMA = pa.schema([("read_id", pa.large_string()), ("sequence", pa.large_string())])


def shard_of_reads(first_read: int, count: int, shards: int) -> pa.Array:
    """Read i of a file (0-based, empty records not counted) goes to shard i mod K: the same file
    always gives the same shards, shards are balanced to one read, and file order holds within each."""
    return pa.array((np.arange(first_read, first_read + count) % shards).astype(np.int32))


def file_positions(shard_index: int, rows: int, shards: int) -> pa.Array:
    """The 0-based file position of each read of shard `shard_index`, row by row (the inverse of
    `shard_of_reads`): row j of shard k is read j*K + k."""
    return pa.array(np.arange(rows, dtype=np.int64) * shards + shard_index)


def write_read_shards(source: Path, shard_paths: list[Path], progress=None) -> ReadStats:
    """Validate every read of `source` and write them to `shard_paths` (one per shard).

    Nothing becomes visible unless the whole file is valid: shards are written to temporary files
    and renamed into place at the end. `progress(reads_so_far)` is called after each batch.
    """
    stats = ReadStats()
    all_ids: list[pa.Array] = []
    with ExitStack() as stack:
        temporaries = [stack.enter_context(atomic_path(path)) for path in shard_paths]
        writers = [stack.enter_context(pq.ParquetWriter(t, READ_SCHEMA, compression="zstd")) for t in temporaries]
        for batch in read_batches(source, stats):
            table = pa.table([pa.array(batch.ids, pa.large_string()), pa.array(batch.sequences, pa.large_string())], schema=READ_SCHEMA)
            shard = shard_of_reads(stats.reads - len(batch.ids), len(batch.ids), len(shard_paths))
            for index, writer in enumerate(writers):
                writer.write_table(table.filter(pc.equal(shard, index)))
            all_ids.append(table.column("read_id").combine_chunks())
            if progress is not None:
                progress(stats.reads)
        _refuse_duplicate_ids(source, pa.chunked_array(all_ids, pa.large_string()))
        for writer in writers:
            writer.close()
    return stats


def _refuse_duplicate_ids(source: Path, ids: pa.ChunkedArray) -> None:
    counts = pc.value_counts(ids)
    repeated = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return
    first = repeated[0]["values"].as_py()
    positions = [i + 1 for i in pc.indices_nonzero(pc.equal(ids, first)).to_pylist()]
    raise InputFormatError(
        f"{source}: read id {first!r} occurs {len(positions)} times (reads {', '.join(map(str, positions[:5]))}); "
        f"read ids must be unique ({len(repeated)} ids are repeated in all)"
    )
