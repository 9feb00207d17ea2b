import polars as pl
import pytest

from benchmarks.original import process_reads
from virnucpro_assets.definitions import partitions
from virnucpro_assets.errors import InputFormatError
from virnucpro_assets_tests.pipeline.conftest import reads_of_shard


def test_reads_and_proteins_for_a_small_sample(pipeline, genome_reads):
    reads = genome_reads[:60]
    sample = pipeline.register(reads, "small")
    result = pipeline.materialize(["sample_reads"], sample)
    metadata = result.asset_materializations_for_node("sample_reads")[0].metadata
    assert metadata["reads"].value == 60 and metadata["bases"].value == sum(len(s) for _, s in reads)
    for partition in pipeline.shard_partitions(sample):
        pipeline.materialize(["translated_proteins"], partition)

    stored = scan(pipeline, "sample_reads")
    assert sorted(stored["read_id"].to_list()) == sorted(r for r, _ in reads)
    assert set(stored["sample"]) == {"small"} and set(stored["shard"]) == set(partitions.shard_keys)

    proteins = scan(pipeline, "translated_proteins")
    for index, key in enumerate(partitions.shard_keys):
        shard_rows = proteins.filter(pl.col("shard") == key).select("pair_id", "nucleotide", "protein")
        assert list(shard_rows.iter_rows()) == process_reads(reads_of_shard(reads, index), 500)


def scan(pipeline, asset):
    """Everything of an asset, the way the README tells users to read it."""
    return (
        pl.scan_parquet(str(pipeline.store_root / asset / "**/*.parquet"), hive_partitioning=True, include_file_paths="file")
        .with_columns(shard=pl.col("file").str.extract(r"shard=(\d+)\.parquet$"))
        .collect()
    )


def test_a_bad_sample_fails_clearly_and_leaves_other_samples_untouched(pipeline, genome_reads):
    good = pipeline.register(genome_reads[:10], "good")
    pipeline.materialize(["sample_reads"], good)
    before = sorted(p.read_bytes() for p in (pipeline.store_root / "sample_reads").rglob("*.parquet"))

    bad = pipeline.register(b">a\nACGT\n>a\nACGA\n", "bad")
    with pytest.raises(InputFormatError, match="'a' occurs 2 times"):
        pipeline.materialize(["sample_reads"], bad)
    assert not (pipeline.store_root / "sample_reads" / "sample=bad").exists() or not any(
        (pipeline.store_root / "sample_reads" / "sample=bad").iterdir()
    )
    assert sorted(p.read_bytes() for p in (pipeline.store_root / "sample_reads").rglob("*.parquet")) == before


def test_translation_before_ingest_says_what_to_run_first(pipeline, genome_reads):
    sample = pipeline.register(genome_reads[:3], "early")
    with pytest.raises(Exception, match="sample_reads \\[early\\] has not been materialized: materialize it first"):
        pipeline.materialize(["translated_proteins"], pipeline.shard_partitions(sample)[0])
