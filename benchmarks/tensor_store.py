"""The tensor store's file format: writing and loading an N x 3328 float32 embedding table (the
width of merged_features) as Parquet, the way the store wrote it before (fixed-size list column,
uncompressed floats, zstd ids), against Arrow IPC through the store's own write_embeddings and
load_embeddings, in the same run, on the same data, in the same directory.

    python -m benchmarks.tensor_store [--rows 20000] [--width 3328] [--repeats 3] [--workdir DIR]

One JSON line per format: best-of-`repeats` seconds to write the file, to load it into (pair ids,
float32 matrix), and to load it and read every value once (a sum over the matrix: a memory-mapped
load reads the file only when its pages are touched), and the file size. Then one line with the
ratios Parquet / Arrow IPC. Files are read right after being written, so from the page cache, as a
downstream step usually reads its upstream.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import emit
from virnucpro_assets.storage import EMBEDDING_EXTENSION, EmbeddingTable, Store, load_embeddings, write_embeddings


def write_parquet(path: Path, pair_ids: list[str], vectors: np.ndarray) -> None:
    """How the store wrote embedding tables before they were Arrow IPC (published by the store,
    atomic rename and fsync included, as the tensor store's files are)."""
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    table = pa.table({"pair_id": pa.array(pair_ids, type=pa.large_string()), "embedding": column})
    Store(path.parent).publish_file(
        path, lambda local: pq.write_table(table, local, compression={"pair_id": "zstd", "embedding": "none"}, use_dictionary=["pair_id"])
    )


def write_arrow(path: Path, pair_ids: list[str], vectors: np.ndarray) -> None:
    """The tensor store's own write, published by the store."""
    Store(path.parent).publish_file(path, lambda local: write_embeddings(local, EmbeddingTable(pa.array(pair_ids), vectors)))


def load_parquet(path: Path) -> tuple[pa.Array, np.ndarray]:
    """How the store loaded them."""
    table = pq.read_table(path)
    column = table.column("embedding").combine_chunks()
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return table.column("pair_id").combine_chunks(), flat.reshape(-1, column.type.list_size)


def measure(write, load, path: Path, pair_ids: list[str], vectors: np.ndarray, repeats: int) -> tuple[dict, tuple]:
    """Best-of-`repeats` seconds of write, load, and load plus one pass over the matrix."""
    times = {"write_s": [], "load_s": [], "load_and_sum_s": []}
    for _ in range(repeats):
        path.unlink(missing_ok=True)
        start = time.perf_counter()
        write(path, pair_ids, vectors)
        times["write_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        ids, matrix = load(path)
        times["load_s"].append(time.perf_counter() - start)
        del ids, matrix
        start = time.perf_counter()
        ids, matrix = load(path)
        matrix.sum(dtype=np.float64)
        times["load_and_sum_s"].append(time.perf_counter() - start)
    figures = {name: round(min(values), 6) for name, values in times.items()}
    figures["file_mb"] = round(path.stat().st_size / 1e6, 1)
    return figures, (ids, matrix)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--width", type=int, default=3328)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the files (default: a temporary directory)")
    args = parser.parse_args()

    vectors = np.random.default_rng(0).standard_normal((args.rows, args.width), dtype=np.float32)
    pair_ids = [f"read{i // 6}_chunk_1{'FR'[i % 6 // 3]}{i % 3 + 1}" for i in range(args.rows)]
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        results = {}
        formats = {
            "parquet": (write_parquet, load_parquet, "parquet"),
            "arrow_ipc": (write_arrow, load_embeddings, EMBEDDING_EXTENSION),
        }
        for name, (write, load, extension) in formats.items():
            figures, (ids, matrix) = measure(write, load, Path(scratch) / f"shard=000.{extension}", pair_ids, vectors, args.repeats)
            if ids.to_pylist() != pair_ids or not np.array_equal(matrix, vectors):
                raise SystemExit(f"{name}: the loaded table differs from the one written")
            results[name] = emit(benchmark="tensor_store", format=name, rows=args.rows, width=args.width, **figures)
        old, new = results["parquet"], results["arrow_ipc"]
        emit(
            benchmark="tensor_store_ratio",
            rows=args.rows,
            width=args.width,
            **{
                f"parquet_over_arrow_{figure}": round(old[figure] / max(new[figure], 1e-9), 1)
                for figure in ("write_s", "load_s", "load_and_sum_s")
            },
        )


if __name__ == "__main__":
    main()
