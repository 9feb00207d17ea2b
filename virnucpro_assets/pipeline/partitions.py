"""Samples are dynamic partitions; each sample's reads are spread over K static shards."""

from __future__ import annotations

import warnings

import dagster as dg

from virnucpro_assets import settings

SAMPLES = "samples"

samples_partitions = dg.DynamicPartitionsDefinition(name=SAMPLES)
shard_keys = [f"{i:03d}" for i in range(settings.shard_count())]
shards_partitions = dg.StaticPartitionsDefinition(shard_keys)
# Dimension names sort as sample < shard, so partition keys read "<sample>|<shard>".
sample_shard_partitions = dg.MultiPartitionsDefinition({"sample": samples_partitions, "shard": shards_partitions})

# A shard asset reads the one sample-level partition of its sample.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    from_sample = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="sample")


def sample_and_shard(context: dg.AssetExecutionContext) -> tuple[str, str]:
    # A run launched with a plain "sample|shard" partition tag (dagster job launch) hands the key
    # over as a string rather than a MultiPartitionKey.
    keys = sample_shard_partitions.get_partition_key_from_str(str(context.partition_key)).keys_by_dimension
    return keys["sample"], keys["shard"]
