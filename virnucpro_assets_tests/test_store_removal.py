"""Removing a sample's files from the store, on a file system and on an object store."""

from virnucpro_assets_tests.test_store import store  # noqa: F401  (the store fixture: local, then s3)


def test_removing_a_sample_takes_all_its_files_and_nothing_else(store):  # noqa: F811
    for sample in ("drop", "keep"):
        store.publish_file(store.shard_path("predictions", sample, "000", "parquet"), lambda local: local.write_bytes(b"p"))
        store.publish_directory(store.sample_dir("sample_report", sample), lambda local: (local / "a.txt").write_bytes(b"a"))
    store.publish_file(store.shard_path("predictions", "drop", "001", "parquet"), lambda local: local.write_bytes(b"p"))
    store.withdraw(store.sample_dir("predictions", "drop"), "shard=001.parquet")

    assert store.sample_assets("drop") == ["predictions", "sample_report"]
    assert store.remove_sample("predictions", "drop") == store.sample_dir("predictions", "drop")
    assert store.remove_sample("sample_report", "drop") is not None
    assert store.remove_sample("sample_report", "drop") is None  # nothing left to remove
    assert store.sample_assets("drop") == []
    assert not store.sample_dir("predictions", "drop").exists()
    assert store.list_names(store.sample_dir("predictions", "keep")) == ["shard=000.parquet"]
    assert store.list_names(store.sample_dir("sample_report", "keep")) == ["a.txt"]
