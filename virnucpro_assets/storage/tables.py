"""Files of the store: plain tables (Parquet) and embedding tables (Arrow IPC).

Plain tables (`sample_reads`, `translated_proteins`, `predictions`, the report's per-read table)
are Parquet, zstd-compressed.

Embedding tables (the "tensor store": `dnabert_embeddings`, `esm2_embeddings`, `merged_features`)
are Arrow IPC files, i.e. Feather v2, uncompressed, with the extension `.arrow`
(EMBEDDING_EXTENSION). Two columns: `pair_id` (large_string) and `embedding` (fixed-size list of
float32, 768 / 2560 / 3328 wide), written as one record batch so that the whole float column is
one contiguous buffer in the file. Embeddings do not compress, and an uncompressed IPC file can be
memory-mapped and viewed as a numpy matrix without decoding or copying. Against the Parquet files
the store wrote before (same columns, floats uncompressed), writing is about 10 times faster before
the fsync that both pay, and loading and reading every value once about 10 times faster;
`python -m benchmarks.tensor_store` measures both (README, "Store").

Load one in one line with any of:

    ids, matrix = virnucpro_assets.storage.load_embeddings(path)   # pyarrow ids, float32 [rows, width]
    table = pyarrow.feather.read_table(path)
    frame = polars.read_ipc(path)

Files are written through atomic_path and replaced by rename, never rewritten in place, so a
matrix that load_embeddings memory-mapped stays valid (and unchanged) after its file is replaced
or deleted: the old file's data lives until the last view of it is gone (POSIX semantics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from virnucpro_assets.storage.store import atomic_path

EMBEDDING_COLUMN = "embedding"
# File extension of embedding tables in the store; every caller builds their paths with it.
EMBEDDING_EXTENSION = "arrow"
# What stores written before embedding tables were Arrow IPC used in its place.
FORMER_EMBEDDING_EXTENSION = "parquet"


def write_table(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary, compression="zstd")


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(path, columns=columns)


def write_embeddings(path: Path, pair_ids: pa.Array | pa.ChunkedArray | list[str], vectors: np.ndarray) -> None:
    """Write an embedding table (Arrow IPC, uncompressed, one record batch) atomically at `path`,
    replacing the Parquet table a store of the former format kept there."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(pair_ids):
        raise ValueError(f"{len(pair_ids)} ids but vectors of shape {vectors.shape}")
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    table = pa.table({"pair_id": _large_strings(pair_ids), EMBEDDING_COLUMN: column})
    with atomic_path(path) as temporary:
        feather.write_feather(table, temporary, compression="uncompressed", chunksize=max(table.num_rows, 1))
    _remove_former_embeddings(path)


def load_embeddings(path: Path) -> tuple[pa.Array, np.ndarray]:
    """(pair ids, float32 matrix of shape [rows, width]) of an embedding table.

    The matrix is a read-only view of the memory-mapped file (no copy, pages read on first use);
    it stays valid after the file is replaced or deleted. Copy it (`matrix.copy()`) to modify it."""
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_file(source).read_all()
    column = _one_chunk(table.column(EMBEDDING_COLUMN))
    flat = column.flatten().to_numpy(zero_copy_only=False)  # a view when there are no nulls, as written
    return _one_chunk(table.column("pair_id")), flat.reshape(-1, column.type.list_size)


def _remove_former_embeddings(path: Path) -> None:
    """Remove the Parquet embedding table that a store written before the switch to Arrow IPC kept
    in place of `path`, so that re-materializing a partition leaves only its current file."""
    path.with_suffix(f".{FORMER_EMBEDDING_EXTENSION}").unlink(missing_ok=True)


def _large_strings(values: pa.Array | pa.ChunkedArray | list[str]) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.cast(pa.large_string()) if isinstance(values, pa.Array) else pa.array(values, type=pa.large_string())


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    # Files written by write_embeddings hold one record batch (zero chunks when empty); others may hold more.
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
