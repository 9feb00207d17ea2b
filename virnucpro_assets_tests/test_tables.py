"""Embedding tables: Arrow IPC files any Arrow reader loads, memory-mapped by load_embeddings."""

import os

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from virnucpro_assets.storage import EMBEDDING_EXTENSION, load_embeddings, write_embeddings


@pytest.fixture
def vectors():
    return np.random.default_rng(0).standard_normal((5, 12), dtype=np.float32)


def test_round_trip_and_the_public_readers(tmp_path, vectors):
    path = tmp_path / f"shard=000.{EMBEDDING_EXTENSION}"
    ids = [f"read{i}_chunk_1F1" for i in range(5)]
    write_embeddings(path, pa.chunked_array([ids[:2], ids[2:]]), vectors)

    loaded_ids, matrix = load_embeddings(path)
    assert loaded_ids.to_pylist() == ids
    assert matrix.dtype == np.float32 and matrix.shape == (5, 12)
    np.testing.assert_array_equal(matrix, vectors)

    table = feather.read_table(path)
    assert table.schema == pa.schema({"pair_id": pa.large_string(), "embedding": pa.list_(pa.float32(), 12)})
    assert table.column("embedding").num_chunks == 1  # one record batch: one contiguous float buffer
    reader = pa.ipc.open_file(path)
    assert reader.num_record_batches == 1 and reader.schema == table.schema  # an IPC file, i.e. Feather v2
    frame = pl.read_ipc(path)
    assert frame["pair_id"].to_list() == ids
    np.testing.assert_array_equal(frame["embedding"].to_numpy(), vectors)
    # Uncompressed: the file is the floats plus a little framing.
    assert vectors.nbytes < path.stat().st_size < vectors.nbytes + 4096


def test_a_loaded_matrix_outlives_its_file_being_replaced_or_deleted(tmp_path, vectors):
    path = tmp_path / "x.arrow"
    write_embeddings(path, [str(i) for i in range(5)], vectors)
    ids, matrix = load_embeddings(path)
    assert not matrix.flags.writeable  # a view of the mapped file, not a copy

    write_embeddings(path, ["other"], np.full((1, 3), 7, np.float32))
    np.testing.assert_array_equal(matrix, vectors)
    assert load_embeddings(path)[1].tolist() == [[7, 7, 7]]
    os.unlink(path)
    np.testing.assert_array_equal(matrix, vectors)
    assert ids.to_pylist() == ["0", "1", "2", "3", "4"]


def test_empty_table_and_mismatched_rows(tmp_path):
    path = tmp_path / "empty.arrow"
    write_embeddings(path, [], np.zeros((0, 768), np.float32))
    ids, matrix = load_embeddings(path)
    assert len(ids) == 0 and matrix.shape == (0, 768)
    with pytest.raises(ValueError, match="2 ids but vectors of shape"):
        write_embeddings(tmp_path / "bad.arrow", ["a", "b"], np.zeros((3, 4), np.float32))
    assert not (tmp_path / "bad.arrow").exists() and list(tmp_path.iterdir()) == [path]


def test_writing_embeddings_removes_only_the_former_parquet_of_that_shard(tmp_path):
    for name in ("shard=000.parquet", "shard=001.parquet"):
        (tmp_path / name).write_bytes(b"x")
    write_embeddings(tmp_path / "shard=000.arrow", ["a"], np.ones((1, 3), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard=000.arrow", "shard=001.parquet"]
