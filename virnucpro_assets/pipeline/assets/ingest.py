"""Reads in, proteins out: the two CPU stages before the models."""

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from virnucpro_assets.pipeline.automation import follows_upstream
from virnucpro_assets.pipeline.partitions import Partitions, by_sample
from virnucpro_assets.pipeline.resources import StoreResource, TranslationSettings
from virnucpro_assets.sequences.sharding import split_reads
from virnucpro_assets.sequences.translation import translate_reads


def ingest_assets(partitions: Partitions) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions.samples,
        io_manager_key="table_io_manager",
        group_name="ingest",
        kinds={"parquet"},
        # How reads are spread over the shards: stores sharded another way show these partitions as changed.
        code_version="shards=by-sequence-either-strand",
        description=(
            "The sample's reads, checked (FASTA or FASTQ, plain or gzip/bz2/xz/zstd-compressed; U read as T) and spread over the "
            "shards by a hash of the sequence on either strand, so that identical reads, and a read and its reverse complement, "
            "share a shard and their pairs are embedded once; in file order within each: Parquet with read_id, sequence and "
            "file_position (0-based, in the file), one file per shard."
        ),
    )
    def sample_reads(context: dg.AssetExecutionContext, store: StoreResource) -> dg.Output[dict[str, pa.Table]]:
        sample = store.registry.get(context.partition_key)
        tables, stats = split_reads(
            store.registry.source_file(sample),
            partitions.shards,
            expected_sha256=sample.sha256,
            sample=sample.name,
            progress=lambda n: context.log.info(f"{n:,} reads checked"),
        )
        lengths = np.frombuffer(stats.lengths, dtype=np.uint32)
        return dg.Output(
            dict(zip(partitions.shard_keys, tables)),
            metadata={
                "source": dg.MetadataValue.path(sample.path),
                "source_sha256": stats.sha256,
                "format": stats.format + (f" ({stats.compression})" if stats.compression else ""),
                "reads": stats.reads,
                "bases": stats.bases,
                "rna_reads_read_as_dna": stats.rna_reads,
                "skipped_empty_records": stats.skipped_empty,
                "length_min": int(lengths.min()),
                "length_median": float(np.median(lengths)),
                "length_max": int(lengths.max()),
                "shards": partitions.shards,
            },
        )

    @dg.asset(
        partitions_def=partitions.sample_shard,
        ins={"sample_reads": dg.AssetIn(partition_mapping=by_sample)},
        io_manager_key="table_io_manager",
        automation_condition=follows_upstream,
        group_name="ingest",
        kinds={"parquet"},
        description=(
            "Each read cut into 300/500-letter chunks exactly as VirNucPro does, all six reading frames "
            "translated, and only the frames without a stop codon kept (pair_id, read_id, chunk_id, "
            "frame, nucleotide, protein)."
        ),
    )
    def translated_proteins(sample_reads: pa.Table, translation: TranslationSettings) -> dg.Output[pa.Table]:
        proteins = translate_reads(sample_reads.column("read_id"), sample_reads.column("sequence"), translation.checked_chunk_length())
        return dg.Output(
            proteins,
            metadata={
                "reads": sample_reads.num_rows,
                "pairs": proteins.num_rows,
                "chunks_with_kept_frames": pc.count_distinct(proteins.column("chunk_id")).as_py(),
                "chunk_length": translation.checked_chunk_length(),
            },
        )

    return [sample_reads, translated_proteins]
