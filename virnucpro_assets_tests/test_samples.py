import multiprocessing

import pytest

from virnucpro_assets.errors import ConfigurationError, InputFormatError
from virnucpro_assets.samples import (
    RegistryEntryError,
    SampleRegistry,
    sample_name_from_path,
)
from virnucpro_assets.sequences.sharding import split_reads
from virnucpro_assets.storage import Store
from virnucpro_assets.storage.checksums import sha256_file


@pytest.mark.parametrize(
    "file_name, name",
    [
        ("Lib 7.fastq.gz", "Lib_7"),
        ("x.FA", "x"),
        ("r.fq.zst", "r"),
        ("r.fasta.bz2", "r"),
        ("r.fa.xz", "r"),
        ("run.1.fq", "run.1"),
        ("..evil.fa", "evil"),
        ("a/b", "b"),
    ],
)
def test_names_derived_from_file_names(tmp_path, file_name, name):
    from pathlib import Path

    assert sample_name_from_path(Path(file_name)) == name


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", ".hidden", "", "x" * 129, "a b", "é"])
def test_names_that_could_escape_the_store_are_refused(tmp_path, bad):
    reads = tmp_path / "r.fa"
    reads.write_text(">a\nACGT\n")
    with pytest.raises(ConfigurationError, match="not allowed"):
        SampleRegistry(tmp_path / "store").register(reads, bad)
    with pytest.raises(ConfigurationError):
        Store(tmp_path / "store").shard_path("sample_reads", bad, "000", "parquet")


def test_registration_is_idempotent_and_refuses_a_different_file_under_the_same_name(tmp_path):
    registry = SampleRegistry(tmp_path / "store")
    first = tmp_path / "s1.fa"
    first.write_text(">a\nACGT\n")
    sample, created = registry.register(first)
    assert (sample.name, created) == ("s1", True)
    assert registry.register(first) == (sample, False)
    renamed = tmp_path / "copy.fa"
    renamed.write_bytes(first.read_bytes())
    assert registry.register(renamed) == (sample, False)  # same content: the same sample
    other = tmp_path / "other.fa"
    other.write_text(">b\nGGGG\n")
    with pytest.raises(ConfigurationError, match="already registered"):
        registry.register(other, "s1")
    assert [s.name for s in registry.all()] == ["s1"]


def test_registration_refuses_bad_files_and_notices_changes(tmp_path):
    registry = SampleRegistry(tmp_path / "store")
    with pytest.raises(InputFormatError, match="no such file"):
        registry.register(tmp_path / "missing.fa")
    path = tmp_path / "s.fa"
    path.write_text(">a\nACGT\n")
    sample, _ = registry.register(path)
    path.write_text(">a\nACGA\n")
    with pytest.raises(InputFormatError, match="changed since it was registered as sample 's'"):  # same size, other content
        split_reads(registry.source_file(sample), 2, expected_sha256=sample.sha256, sample=sample.name)


def test_source_file_is_a_cheap_check_of_presence_and_size(tmp_path):
    registry = SampleRegistry(tmp_path / "store")
    path = tmp_path / "s.fa"
    path.write_text(">a\nACGT\n")
    sample, _ = registry.register(path)
    assert registry.source_file(sample) == path
    with open(path, "a") as handle:
        handle.write(">b\nGG\n")
    with pytest.raises(InputFormatError, match=r"changed since it was registered as sample 's' \(8 bytes then, 14 now\)"):
        registry.source_file(sample)
    path.unlink()
    with pytest.raises(InputFormatError, match="is gone"):
        registry.source_file(sample)


@pytest.mark.parametrize("damage", ["truncated", "not an entry", "not UTF-8"])
def test_a_damaged_entry_names_its_file_and_does_not_break_other_registrations(tmp_path, damage):
    registry = SampleRegistry(tmp_path / "store")
    first = tmp_path / "s1.fa"
    first.write_text(">a\nACGT\n")
    registry.register(first)
    entry = registry.directory / "s1.json"
    whole = entry.read_bytes()
    entry.write_bytes({"truncated": whole[: len(whole) // 2], "not an entry": b"[1, 2]", "not UTF-8": b"\xff\xfe{"}[damage])
    with pytest.raises(RegistryEntryError) as error:
        registry.get("s1")
    assert str(error.value).startswith(f"{entry}: this sample registry entry is damaged")
    assert "remove it and add the sample's file again with `virnucpro-assets add-sample PATH --name s1`" in str(error.value)
    with pytest.raises(RegistryEntryError, match="s1.json"):
        registry.register(first)  # its own name: the damage is named, not overwritten
    other = tmp_path / "s2.fa"
    other.write_text(">b\nGGGG\n")
    assert registry.register(other)[1] is True
    assert [s.name for s in registry.all()] == ["s2"]
    entry.unlink()
    assert registry.register(first)[0].name == "s1"


def _register_at_once(store, path, barrier, results):
    barrier.wait()
    try:
        sample, created = SampleRegistry(store).register(path)
        results.put((path.name, sample.name, created))
    except Exception as error:  # noqa: BLE001 - reported to the test, which fails on it
        results.put((path.name, repr(error), None))


def _register_concurrently(tmp_path, paths):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(len(paths)), context.Queue()
    workers = [context.Process(target=_register_at_once, args=(tmp_path / "store", p, barrier, results)) for p in paths]
    for worker in workers:
        worker.start()
    outcomes = sorted(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    return outcomes


def test_concurrent_registrations_of_different_files_both_land(tmp_path):
    paths = [tmp_path / "a.fa", tmp_path / "b.fa"]
    paths[0].write_text(">a\nACGT\n")
    paths[1].write_text(">b\nGGCC\n")
    assert _register_concurrently(tmp_path, paths) == [("a.fa", "a", True), ("b.fa", "b", True)]
    registry = SampleRegistry(tmp_path / "store")
    assert [(s.name, s.sha256) for s in registry.all()] == [("a", sha256_file(paths[0])), ("b", sha256_file(paths[1]))]
    assert sorted(p.name for p in registry.directory.iterdir()) == [".lock", "a.json", "b.json"]


def test_concurrent_registrations_of_the_same_file_make_one_sample(tmp_path):
    path = tmp_path / "same.fa"
    path.write_text(">a\nACGT\n")
    outcomes = _register_concurrently(tmp_path, [path, path])
    assert sorted(created for _, _, created in outcomes) == [False, True]
    assert {name for _, name, _ in outcomes} == {"same"}
    assert [s.name for s in SampleRegistry(tmp_path / "store").all()] == ["same"]
