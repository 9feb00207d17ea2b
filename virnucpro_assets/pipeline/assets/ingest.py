"""Reads in, proteins out: the two CPU stages before the models."""

import dagster as dg
import numpy as np
import pyarrow.compute as pc

from virnucpro_assets.pipeline.automation import follows_upstream
from virnucpro_assets.pipeline.partitions import (
    from_sample,
    sample_and_shard,
    sample_shard_partitions,
    samples_partitions,
    shard_keys,
)
from virnucpro_assets.pipeline.resources import StoreResource, TranslationSettings
from virnucpro_assets.sequences.sharding import write_read_shards
from virnucpro_assets.sequences.translation import translate_reads
from virnucpro_assets.storage import read_table, write_table


@dg.asset(
    partitions_def=samples_partitions,
    group_name="ingest",
    kinds={"parquet"},
    description=(
        "The sample's reads, checked (FASTA or FASTQ, plain or gzipped) and spread over the shards "
        "in file order: Parquet with read_id and sequence, one file per shard."
    ),
)
def sample_reads(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    sample = store.registry.get(context.partition_key)
    source = store.registry.verify_unchanged(sample)
    paths = [store.store.shard_path("sample_reads", sample.name, shard, "parquet") for shard in shard_keys]
    stats = write_read_shards(source, paths, progress=lambda n: context.log.info(f"{n:,} reads checked and written"))
    for stale in set(store.store.shard_paths("sample_reads", sample.name, "parquet")) - set(paths):
        stale.unlink()  # shards of an earlier, larger VIRNUCPRO_SHARDS
    lengths = np.frombuffer(stats.lengths, dtype=np.uint32)
    return dg.MaterializeResult(
        metadata={
            "source": dg.MetadataValue.path(sample.path),
            "source_sha256": sample.sha256,
            "format": f"{stats.format}{f' ({stats.compression})' if stats.compression else ''}",
            "reads": stats.reads,
            "bases": stats.bases,
            "skipped_empty_records": stats.skipped_empty,
            "length_min": int(lengths.min()),
            "length_median": float(np.median(lengths)),
            "length_max": int(lengths.max()),
            "shards": len(paths),
            "path": dg.MetadataValue.path(str(paths[0].parent)),
        }
    )


@dg.asset(
    partitions_def=sample_shard_partitions,
    automation_condition=follows_upstream,
    deps=[dg.AssetDep(sample_reads, partition_mapping=from_sample)],
    group_name="ingest",
    kinds={"parquet"},
    description=(
        "Each read cut into 300/500-letter chunks exactly as VirNucPro does, all six reading frames "
        "translated, and only the frames without a stop codon kept (pair_id, read_id, chunk_id, "
        "frame, nucleotide, protein)."
    ),
)
def translated_proteins(
    context: dg.AssetExecutionContext, store: StoreResource, translation: TranslationSettings
) -> dg.MaterializeResult:
    sample, shard = sample_and_shard(context)
    reads = read_table(store.store.upstream("sample_reads", sample, shard, "parquet"))
    proteins = translate_reads(reads.column("read_id"), reads.column("sequence"), translation.checked_chunk_length())
    path = store.store.shard_path("translated_proteins", sample, shard, "parquet")
    write_table(proteins, path)
    return dg.MaterializeResult(
        metadata={
            "reads": reads.num_rows,
            "pairs": proteins.num_rows,
            "chunks_with_kept_frames": pc.count_distinct(proteins.column("chunk_id")).as_py(),
            "chunk_length": translation.checked_chunk_length(),
            "path": dg.MetadataValue.path(str(path)),
        }
    )
