"""The store publishes whole files and whole directories, on a file system and on an object store
(a real S3-compatible server), and a writer killed at any point leaves nothing that looks finished."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from virnucpro_assets.errors import ConfigurationError
from virnucpro_assets.storage import Store

KILL_TIMEOUT_S = 60

# A writer in its own process: publishes `name` under the store, writing half of it, then says so
# (a marker file) and waits to be killed.
STALLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from virnucpro_assets.storage import Store

    root, kind, marker = sys.argv[1:4]
    store = Store(root)

    def write(local):
        local.write_bytes(b"half of the new content")
        Path(marker).touch()
        time.sleep(600)

    if kind == "file":
        store.publish_file(store.shard_path("predictions", "s", "000", "parquet"), write)
    else:
        store.publish_directory(store.sample_dir("sample_report", "s"), lambda d: write(d / "prediction_results.txt"))
    """
)


def kill_while_writing(root: str, kind: str, tmp_path) -> None:
    marker = tmp_path / f"marker-{kind}"
    writer = subprocess.Popen([sys.executable, "-c", STALLED_WRITER, root, kind, str(marker)])
    try:
        deadline = time.monotonic() + KILL_TIMEOUT_S
        while not marker.exists():
            assert writer.poll() is None, "the writer exited before it started writing"
            assert time.monotonic() < deadline, "the writer did not start writing"
            time.sleep(0.05)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()


def visible(store: Store, asset: str) -> dict[str, bytes]:
    directory = store.sample_dir(asset, "s")
    return {name: (directory / name).read_bytes() for name in store.list_names(directory)}


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return Store(tmp_path / "store")
    url, _ = request.getfixturevalue("s3_bucket")
    return Store(f"{url}/store")


def test_a_killed_file_write_leaves_the_previous_file_and_the_next_write_cleans_up(store, tmp_path):
    path = store.shard_path("predictions", "s", "000", "parquet")
    store.publish_file(path, lambda local: local.write_bytes(b"version 1"))

    kill_while_writing(str(store.root), "file", tmp_path)
    assert visible(store, "predictions") == {"shard=000.parquet": b"version 1"}

    store.publish_file(path, lambda local: local.write_bytes(b"version 2"))
    assert visible(store, "predictions") == {"shard=000.parquet": b"version 2"}
    if store.local:  # the killed writer's hidden temporary is gone too
        assert sorted(p.name for p in path.parent.iterdir()) == ["shard=000.parquet"]


def test_a_directory_appears_whole_and_replaces_the_previous_one_whole(store, tmp_path):
    directory = store.sample_dir("sample_report", "s")

    def first(local):
        for name in ("prediction_results.txt", "per_read.parquet", "per_read_scores.png"):
            (local / name).write_bytes(name.encode())

    digests = store.publish_directory(directory, first)
    assert sorted(digests) == ["per_read.parquet", "per_read_scores.png", "prediction_results.txt"]

    kill_while_writing(str(store.root), "directory", tmp_path)
    before = visible(store, "sample_report")
    if store.local:  # renamed into place at once: the killed writer left the old version, whole
        assert before == {name: name.encode() for name in digests}

    store.publish_directory(directory, lambda local: (local / "prediction_results.txt").write_bytes(b"new"))
    assert visible(store, "sample_report") == {"prediction_results.txt": b"new"}
    if store.local:
        assert [p.name for p in directory.parent.iterdir()] == ["sample=s"]


def test_a_writer_killed_at_any_moment_leaves_nothing_or_the_whole_object(s3_bucket, tmp_path):
    url, fs = s3_bucket
    payload = os.urandom(12 << 20)  # large enough for a multipart upload
    (tmp_path / "payload").write_bytes(payload)
    script = textwrap.dedent(
        """
        import shutil, sys
        from virnucpro_assets.storage import Store
        store = Store(sys.argv[1])
        store.publish_file(store.shard_path("merged_features", "s", "000", "arrow"), lambda local: shutil.copyfile(sys.argv[2], local))
        """
    )
    for delay in (0.5, 1.0, 1.5, 2.0, 3.0, None):  # None: let it finish
        fs.rm(f"{url}/store", recursive=True) if fs.exists(f"{url}/store") else None
        writer = subprocess.Popen([sys.executable, "-c", script, f"{url}/store", str(tmp_path / "payload")])
        try:
            writer.wait(delay if delay is not None else KILL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait()
        # A multipart upload completed by the server after its client was killed may appear while
        # s3fs lists; only whole objects (type "file") count, a prefix seen as a directory does not.
        fs.invalidate_cache()
        objects = sorted(path for path, info in fs.find(f"{url}/store", detail=True).items() if info["type"] == "file")
        if objects or delay is None:
            assert objects == [f"{url.removeprefix('s3://')}/store/merged_features/sample=s/shard=000.arrow"]
            assert fs.cat_file(objects[0]) == payload


def test_names_that_could_leave_the_store_are_refused(tmp_path):
    store = Store(tmp_path / "store")
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ConfigurationError, match="is not allowed"):
            store.sample_dir("predictions", bad)
    (tmp_path / "store" / "predictions").mkdir(parents=True)
    (tmp_path / "store" / "predictions" / "sample=link").symlink_to(tmp_path)
    with pytest.raises(ConfigurationError, match="outside the store"):
        store.sample_dir("predictions", "link")
