"""Parquet files of the store: plain tables and embedding tables.

Embedding tables (the "tensor store") are Parquet with two columns, `pair_id` (string) and
`embedding` (fixed-size list of float32, 768 / 2560 / 3328 wide). Float columns are stored
uncompressed: embeddings do not compress, and skipping it keeps reads and writes at disk speed.
Load one with `load_embeddings(path)` -> (pair ids, float32 matrix), or read it with
`polars.read_parquet(path)` like any other table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from virnucpro_assets.storage.store import atomic_path

EMBEDDING_COLUMN = "embedding"


def write_table(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary, compression="zstd")


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(path, columns=columns)


def write_embeddings(path: Path, pair_ids: pa.Array | list[str], vectors: np.ndarray) -> None:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(pair_ids):
        raise ValueError(f"{len(pair_ids)} ids but vectors of shape {vectors.shape}")
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    table = pa.table({"pair_id": pa.array(pair_ids, type=pa.large_string()), EMBEDDING_COLUMN: column})
    with atomic_path(path) as temporary:
        pq.write_table(
            table, temporary, compression={"pair_id": "zstd", EMBEDDING_COLUMN: "none"}, use_dictionary=["pair_id"]
        )


def load_embeddings(path: Path) -> tuple[pa.Array, np.ndarray]:
    """(pair ids, float32 matrix of shape [rows, width]) of an embedding table."""
    table = pq.read_table(path)
    column = table.column(EMBEDDING_COLUMN).combine_chunks()
    width = column.type.list_size
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return table.column("pair_id").combine_chunks(), flat.reshape(-1, width)
