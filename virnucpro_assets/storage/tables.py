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

    ids, vectors = virnucpro_assets.storage.load_embeddings(path)  # pyarrow ids, float32 [rows, width]
    table = pyarrow.feather.read_table(path)
    frame = polars.read_ipc(path)

Files are published by the store (virnucpro_assets.storage.store) and replaced by rename, never
rewritten in place, so a matrix that load_embeddings memory-mapped stays valid (and unchanged) after
its file is replaced or deleted: the old file's data lives until the last view of it is gone
(POSIX semantics). Readers take the digest recorded when the file was written and refuse a file
whose bytes differ (`CorruptDataError`), and name the file when it is not a table at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from virnucpro_assets.errors import CorruptDataError
from virnucpro_assets.storage.checksums import algorithm_of, digest_bytes

EMBEDDING_COLUMN = "embedding"
# File extensions of the two kinds of table in the store.
TABLE_EXTENSION = "parquet"
EMBEDDING_EXTENSION = "arrow"


class EmbeddingTable(NamedTuple):
    """One vector per pair: `pair_ids` (pyarrow strings) and `vectors` (float32 [rows, width])."""

    pair_ids: pa.Array
    vectors: np.ndarray

    @property
    def width(self) -> int:
        return int(self.vectors.shape[1])


def write_table(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd")


def read_table(source: Path | bytes, columns: list[str] | None = None, expected_digest: str | None = None, name: str = "") -> pa.Table:
    """A Parquet table from a local path or bytes, after checking it against `expected_digest`."""
    buffer = verified_buffer(source, expected_digest, name)
    try:
        file = pq.ParquetFile(pa.BufferReader(buffer))
        missing = [column for column in columns or [] if column not in file.schema_arrow.names]
        if missing:
            raise CorruptDataError(f"{name or source}: has no column {', '.join(missing)} (written by an earlier version of the pipeline)")
        return file.read(columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise CorruptDataError(f"{name or source}: not a readable Parquet table ({error})") from error


def write_embeddings(path: Path, embeddings: EmbeddingTable) -> None:
    """Write an embedding table (Arrow IPC, uncompressed, one record batch) at `path`."""
    pair_ids, vectors = embeddings
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(pair_ids):
        raise ValueError(f"{len(pair_ids)} ids but vectors of shape {vectors.shape}")
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    table = pa.table({"pair_id": _large_strings(pair_ids), EMBEDDING_COLUMN: column})
    feather.write_feather(table, path, compression="uncompressed", chunksize=max(table.num_rows, 1))


def load_embeddings(source: Path | bytes, expected_digest: str | None = None, name: str = "") -> EmbeddingTable:
    """The embedding table of a local path (memory-mapped) or of bytes, after checking it against
    `expected_digest`.

    The matrix is a read-only view of the mapped file (no copy, pages read on first use); it stays
    valid after the file is replaced or deleted. Copy it (`vectors.copy()`) to modify it."""
    buffer = verified_buffer(source, expected_digest, name)
    try:
        table = pa.ipc.open_file(buffer).read_all()
        column = _one_chunk(table.column(EMBEDDING_COLUMN))
        flat = column.flatten().to_numpy(zero_copy_only=False)  # a view when there are no nulls, as written
        return EmbeddingTable(_one_chunk(table.column("pair_id")), flat.reshape(-1, column.type.list_size))
    except (pa.ArrowException, KeyError, AttributeError) as error:
        raise CorruptDataError(f"{name or source}: not a readable embedding table (Arrow IPC): {error}") from error


def verified_buffer(source: Path | bytes, expected_digest: str | None, name: str) -> pa.Buffer:
    """The bytes of a local file (memory-mapped) or of `source`, checked against `expected_digest`."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        buffer = pa.py_buffer(source)
    else:
        with pa.memory_map(str(source)) as mapped:
            buffer = mapped.read_buffer()
    if expected_digest is not None:
        try:
            found = digest_bytes(buffer, algorithm_of(expected_digest))
        except ValueError as error:
            raise CorruptDataError(f"{name or source}: its recorded digest cannot be checked: {error}") from error
        if found != expected_digest:
            raise CorruptDataError(
                f"{name or source}: its content ({found}) is not what was written ({expected_digest}): "
                "the file was changed, truncated or replaced after it was materialized"
            )
    return buffer


def _large_strings(values: pa.Array | pa.ChunkedArray | list[str]) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.cast(pa.large_string()) if isinstance(values, pa.Array) else pa.array(values, type=pa.large_string())


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    # Files written by write_embeddings hold one record batch (zero chunks when empty); others may hold more.
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
