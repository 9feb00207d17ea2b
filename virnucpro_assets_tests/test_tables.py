"""Embedding tables: Arrow IPC files any Arrow reader loads, memory-mapped by load_embeddings."""

import os

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from virnucpro_assets.errors import CorruptDataError
from virnucpro_assets.storage import EMBEDDING_EXTENSION, EmbeddingTable, Store, load_embeddings, write_embeddings
from virnucpro_assets.storage.checksums import digest_file


@pytest.fixture
def vectors():
    return np.random.default_rng(0).standard_normal((5, 12), dtype=np.float32)


def test_round_trip_and_the_public_readers(tmp_path, vectors):
    path = tmp_path / f"shard=000.{EMBEDDING_EXTENSION}"
    ids = [f"read{i}_chunk_1F1" for i in range(5)]
    write_embeddings(path, EmbeddingTable(pa.chunked_array([ids[:2], ids[2:]]), vectors))

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


def publish(store: Store, path, ids, vectors) -> str:
    return store.publish_file(path, lambda local: write_embeddings(local, EmbeddingTable(pa.array(ids), vectors)))


def test_a_loaded_matrix_outlives_its_file_being_replaced_or_deleted(tmp_path, vectors):
    store = Store(tmp_path)
    path = tmp_path / "x.arrow"
    publish(store, path, [str(i) for i in range(5)], vectors)
    ids, matrix = load_embeddings(path)
    assert not matrix.flags.writeable  # a view of the mapped file, not a copy

    publish(store, path, ["other"], np.full((1, 3), 7, np.float32))
    np.testing.assert_array_equal(matrix, vectors)
    assert load_embeddings(path)[1].tolist() == [[7, 7, 7]]
    os.unlink(path)
    np.testing.assert_array_equal(matrix, vectors)
    assert ids.to_pylist() == ["0", "1", "2", "3", "4"]


def test_empty_table_and_mismatched_rows(tmp_path):
    store = Store(tmp_path)
    path = tmp_path / "empty.arrow"
    publish(store, path, [], np.zeros((0, 768), np.float32))
    ids, matrix = load_embeddings(path)
    assert len(ids) == 0 and matrix.shape == (0, 768)
    with pytest.raises(ValueError, match="2 ids but vectors of shape"):
        publish(store, tmp_path / "bad.arrow", ["a", "b"], np.zeros((3, 4), np.float32))
    assert list(tmp_path.iterdir()) == [path]  # nothing of the failed write, not even a temporary


def test_a_changed_truncated_or_foreign_file_is_refused_naming_it(tmp_path, vectors):
    store = Store(tmp_path)
    path = tmp_path / "shard=000.arrow"
    digest = publish(store, path, [str(i) for i in range(5)], vectors)
    assert digest == digest_file(path)
    assert load_embeddings(path, expected_digest=digest).vectors.shape == (5, 12)

    data = bytearray(path.read_bytes())
    data[-600:-596] = np.float32(0.5).tobytes()  # a plausible float over a vector
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=r"shard=000.arrow: its content .* is not what was written"):
        load_embeddings(path, expected_digest=digest, name=str(path))
    path.write_bytes(bytes(data[:100]))
    with pytest.raises(CorruptDataError, match="shard=000.arrow: not a readable embedding table"):
        load_embeddings(path, name=str(path))


def test_a_table_without_a_column_asked_for_is_named_as_written_by_an_earlier_version(tmp_path):
    from virnucpro_assets.storage.tables import read_table, write_table

    path = tmp_path / "shard=000.parquet"
    write_table(pa.table({"read_id": ["r1"], "sequence": ["ACGT"]}), path)
    assert read_table(path, columns=["sequence"]).column("sequence").to_pylist() == ["ACGT"]
    with pytest.raises(CorruptDataError, match="shard=000.parquet: has no column file_position .written by an earlier version"):
        read_table(path, columns=["read_id", "file_position"], name=str(path))
