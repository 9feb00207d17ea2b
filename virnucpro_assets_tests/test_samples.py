import pytest

from virnucpro_assets.errors import ConfigurationError, InputFormatError
from virnucpro_assets.samples import SampleRegistry, sample_name_from_path
from virnucpro_assets.storage import Store


@pytest.mark.parametrize(
    "file_name, name",
    [("Lib 7.fastq.gz", "Lib_7"), ("x.FA", "x"), ("run.1.fq", "run.1"), ("..evil.fa", "evil"), ("a/b", "b")],
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
    with pytest.raises(InputFormatError, match="changed since"):
        registry.verify_unchanged(sample)
