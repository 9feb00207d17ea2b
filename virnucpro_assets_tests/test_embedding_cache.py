"""The embedding cache: vectors found again by model, precision and sequence, every read checked, a
size bound, two real writer processes adding the same sequences at once, and writers killed (kill -9)
at chosen points leaving a cache that reads as before."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.feather as feather
import pytest

from virnucpro_assets.errors import ConfigurationError
from virnucpro_assets.pipeline.resources import store_resources
from virnucpro_assets.settings import Settings
from virnucpro_assets.storage.embedding_cache import EmbeddingCache, sequence_keys

WIDTH = 24
ENTRY_BYTES = 32 + 8 + 4 * WIDTH  # key, check, vector
KILL_TIMEOUT_S = 60


def proteins(first: int, count: int) -> list[str]:
    """Distinct protein-like strings, the same for the same numbers in every process."""
    return [f"MK{index:06d}" + "ACDEFGHIKLMNPQRSTVWY"[index % 20] * (index % 7 + 1) for index in range(first, first + count)]


def vectors_of(sequences: list[str]) -> np.ndarray:
    """A vector per sequence that depends on the sequence only (as a model's does)."""
    seeds = [int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "little") for s in sequences]
    return np.array([np.random.default_rng(seed).standard_normal(WIDTH, dtype=np.float32) for seed in seeds]).reshape(-1, WIDTH)


def cache_at(root: Path, model: str = "model-a", precision: str = "float32", max_bytes: int = 10**9) -> EmbeddingCache:
    return EmbeddingCache(root, model, precision, WIDTH, max_bytes)


def fill(cache: EmbeddingCache, sequences: list[str]) -> int:
    found = cache.lookup(sequences)
    return cache.add(found, vectors_of([sequences[i] for i in found.misses]))


def segments(root: Path) -> list[Path]:
    return sorted(root.glob("v1/*/*.arrow"))


def entries(root: Path) -> list[bytes]:
    """Every key stored, over all segments (repeats included)."""
    return [key for path in segments(root) for key in feather.read_table(path).column("key").to_pylist()]


def test_vectors_are_found_again_by_model_precision_and_sequence(tmp_path):
    first = proteins(0, 50)
    assert fill(cache_at(tmp_path), first) == 50

    later = cache_at(tmp_path)  # another step
    asked = proteins(25, 50)  # half of them cached
    found = later.lookup(asked)
    assert found.hit.tolist() == [True] * 25 + [False] * 25
    np.testing.assert_array_equal(found.vectors[:25], vectors_of(asked[:25]))  # the very bytes added
    assert not found.vectors[25:].any()
    assert found.misses.tolist() == list(range(25, 50))
    assert (later.stats.hits, later.stats.misses, later.stats.corrupt) == (25, 25, 0)
    assert later.add(found, vectors_of([asked[i] for i in found.misses])) == 25
    assert cache_at(tmp_path).lookup(asked).hit.all()

    # The key holds the model and the precision: nothing of model-a in float32 serves these.
    assert not cache_at(tmp_path, precision="float16").lookup(first).hit.any()
    assert not cache_at(tmp_path, model="model-b").lookup(first).hit.any()
    assert sequence_keys(["MK"]).tobytes() == hashlib.sha256(b"MK").digest()


def test_a_corrupt_entry_is_a_miss_recomputed_and_a_broken_segment_is_skipped_then_deleted(tmp_path):
    sequences = proteins(0, 10)
    fill(cache_at(tmp_path), sequences)
    (segment,) = segments(tmp_path)
    offset = _offset_in_file(segment, vectors_of(sequences[3:4])[0])
    with open(segment, "r+b") as handle:  # one bit of sequence 3's vector flipped on disk
        handle.seek(offset + 5)
        byte = handle.read(1)[0]
        handle.seek(offset + 5)
        handle.write(bytes([byte ^ 0x10]))

    cache = cache_at(tmp_path)
    found = cache.lookup(sequences)
    assert found.hit.tolist() == [i != 3 for i in range(10)]
    assert cache.stats.corrupt == 1
    np.testing.assert_array_equal(found.vectors[found.hit], vectors_of(sequences)[found.hit])
    assert cache.add(found, vectors_of([sequences[3]])) == 1  # recomputed, added again
    again = cache_at(tmp_path).lookup(sequences)
    assert again.hit.all()
    np.testing.assert_array_equal(again.vectors, vectors_of(sequences))

    # A segment cut short is no table: skipped by lookups, deleted by the next writer.
    broken = segments(tmp_path)[0]
    broken.write_bytes(broken.read_bytes()[:300])
    reader = cache_at(tmp_path)
    assert reader.lookup(sequences).hit.sum() < 10
    fill(reader, sequences)
    assert not broken.exists()
    assert cache_at(tmp_path).lookup(sequences).hit.all()


def _offset_in_file(path: Path, row: np.ndarray) -> int:
    """Where the bytes of `row` lie in the file."""
    data = path.read_bytes()
    offset = data.find(row.tobytes())
    assert offset > 0 and data.count(row.tobytes()) == 1
    return offset


def test_the_least_recently_used_segments_go_past_the_size_bound(tmp_path):
    batches = [proteins(100 * i, 100) for i in range(4)]
    for batch in batches[:3]:
        fill(cache_at(tmp_path), batch)
        time.sleep(0.01)  # distinct modification times
    segment_bytes = segments(tmp_path)[0].stat().st_size  # 100 entries each
    bound = 3 * segment_bytes + 100  # three fit, not four
    assert cache_at(tmp_path, max_bytes=bound).lookup(batches[0][:1]).hit.all()  # batch 0 used: now the most recent

    writer = cache_at(tmp_path, max_bytes=bound)
    fill(writer, batches[3])
    assert writer.stats.evicted_segments == 1
    assert sum(path.stat().st_size for path in segments(tmp_path)) <= bound
    kept = [cache_at(tmp_path).lookup(batch).hit.all() for batch in batches]
    assert kept == [True, False, True, True]  # batch 1, the least recently used, went

    # Entries that alone exceed the bound are cut to fit; everything else goes.
    small = cache_at(tmp_path, max_bytes=segment_bytes // 2)
    added = small.add(small.lookup(batches[1]), vectors_of(batches[1]))
    assert 0 < added < 50
    assert sum(path.stat().st_size for path in segments(tmp_path)) <= segment_bytes // 2
    assert cache_at(tmp_path).lookup(batches[1]).hit.sum() == added


def _lookup_wait_add(root: str, first: int, barrier, results) -> None:
    """One writer process: look up, wait until the other has looked up too, add its misses."""
    sequences = proteins(first, 200)
    cache = cache_at(Path(root))
    found = cache.lookup(sequences)
    barrier.wait(KILL_TIMEOUT_S)
    results.put((first, len(found.misses), cache.add(found, vectors_of([sequences[i] for i in found.misses]))))


def test_two_writer_processes_adding_the_same_sequences_leave_one_valid_entry_each(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    writers = [context.Process(target=_lookup_wait_add, args=(str(tmp_path), first, barrier, results)) for first in (0, 100)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(KILL_TIMEOUT_S)
        assert writer.exitcode == 0
    outcome = {first: (misses, added) for first, misses, added in (results.get(timeout=5) for _ in writers)}
    assert outcome[0][0] == outcome[100][0] == 200  # both looked up before either added
    assert sorted(added for _, added in outcome.values()) == [100, 200]  # the second left out the 100 shared ones

    union = proteins(0, 300)
    stored = entries(tmp_path)
    assert len(stored) == len(set(stored)) == 300
    found = cache_at(tmp_path).lookup(union)
    assert found.hit.all()
    np.testing.assert_array_equal(found.vectors, vectors_of(union))


# A writer in its own process that adds 300 entries to a cache of `bound` bytes and stops at `point`
# (writing a marker file), to be killed there.
STOPPING_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import virnucpro_assets.storage.embedding_cache as module
    from virnucpro_assets_tests.test_embedding_cache import cache_at, fill, proteins

    root, point, marker, bound = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])

    def stop(*args, **kwargs):
        marker.touch()
        time.sleep(600)

    if point == "writing":  # the segment's bytes written, not yet synced nor renamed; no lock held
        module.fsync_file = stop
    elif point == "publishing":  # holding the lock, old segments evicted, the new one about to be renamed
        os.replace = stop
    elif point == "evicting":  # holding the lock, one old segment deleted, another about to be
        deletions, unlink = [], Path.unlink
        def unlink_then_stop(path, missing_ok=False):
            if deletions:
                stop()
            deletions.append(path)
            unlink(path, missing_ok=missing_ok)
        Path.unlink = unlink_then_stop
    fill(cache_at(Path(root), max_bytes=bound), proteins(1000, 300))
    """
)


@pytest.mark.parametrize("point", ["writing", "publishing", "evicting"])
def test_a_writer_killed_at_any_point_leaves_a_cache_that_reads_as_before(tmp_path, point):
    root = tmp_path / "cache"
    old = [proteins(0, 100), proteins(100, 100)]
    bound = 300 * ENTRY_BYTES + 4096  # the killed writer's 300 entries need both old segments gone
    for batch in old:
        fill(cache_at(root, max_bytes=bound), batch)
        time.sleep(0.01)  # distinct modification times: the first is the least recently used
    marker = tmp_path / "marker"
    writer = subprocess.Popen(
        [sys.executable, "-c", STOPPING_WRITER, str(root), point, str(marker), str(bound)], cwd=Path(__file__).parents[1]
    )
    try:
        deadline = time.monotonic() + KILL_TIMEOUT_S
        while not marker.exists():
            assert writer.poll() is None, f"the writer exited before reaching {point}"
            assert time.monotonic() < deadline, f"the writer did not reach {point}"
            time.sleep(0.02)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()

    (temporary,) = root.glob("v1/*/.*.tmp")  # the killed writer's segment, never published
    found = [cache_at(root).lookup(batch) for batch in old]
    # Segments go whole: before its eviction both old ones are there, halfway through the older one
    # is gone, once it is done neither.
    assert [f.hit.sum() for f in found] == {"writing": [100, 100], "evicting": [0, 100], "publishing": [0, 0]}[point]
    for batch, result in zip(old, found):
        np.testing.assert_array_equal(result.vectors[result.hit], vectors_of(batch)[result.hit])
    assert not cache_at(root).lookup(proteins(1000, 300)).hit.any()

    # The lock died with the writer: the next one takes it, removes the temporary and adds its entries.
    assert fill(cache_at(root, max_bytes=bound), proteins(1000, 300)) == 300
    assert not temporary.exists()
    assert cache_at(root).lookup(proteins(1000, 300)).hit.all()


def test_an_unwritable_cache_is_logged_and_the_step_goes_on(tmp_path):
    (tmp_path / "v1").write_text("a file where the cache's directory should be")
    cache = cache_at(tmp_path)
    found = cache.lookup(proteins(0, 5))
    assert not found.hit.any()
    assert cache.add(found, vectors_of(proteins(0, 5))) == 0
    assert len(cache.stats.errors) == 2 and "going on without it" in cache.stats.errors[0]


def test_the_settings_of_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("VIRNUCPRO_STORE", str(tmp_path))
    settings = Settings.from_environment()
    assert settings.embedding_cache == "off" and settings.embedding_cache_max_gb == 100.0
    monkeypatch.setenv("VIRNUCPRO_EMBEDDING_CACHE", "esm2")
    monkeypatch.setenv("VIRNUCPRO_EMBEDDING_CACHE_MAX_GB", "2.5")
    settings = Settings.from_environment()
    assert settings.embedding_cache == "esm2" and settings.embedding_cache_max_gb == 2.5
    store = store_resources(str(tmp_path), settings=settings)["store"]
    cache = store.embedding_cache_of("esm2", SimpleNamespace(embedding_key="a1b2", dim=2560), "float16")
    assert cache.namespace == tmp_path / "_embedding_cache" / "v1" / "a1b2-float16" and cache.max_bytes == 2_500_000_000
    assert (cache.width, store.embedding_cache_of("dnabert", None, "float16")) == (2560, None)  # only ESM-2's vectors are cached
    for variable, value, message in [
        ("VIRNUCPRO_EMBEDDING_CACHE_MAX_GB", "0", "a number above 0"),
        ("VIRNUCPRO_EMBEDDING_CACHE_MAX_GB", "lots", "a number above 0"),
        ("VIRNUCPRO_EMBEDDING_CACHE", "yes", "give on"),
        ("VIRNUCPRO_STORE", "s3://bucket/store", "needs a file-system store"),
    ]:
        with monkeypatch.context() as patch:
            patch.setenv(variable, value)
            with pytest.raises(ConfigurationError, match=message):
                Settings.from_environment()
