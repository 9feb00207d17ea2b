"""Samples are dynamic partitions; each sample's reads are spread over K static shards. Training
sets (one dynamic partition per set and chunk length, `<set>-<chunk length>`) are spread over the
same K shards, record by record."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import dagster as dg

SAMPLES = "samples"

TRAINING_SETS = "training_sets"

samples_partitions = dg.DynamicPartitionsDefinition(name=SAMPLES)
training_sets_partitions = dg.DynamicPartitionsDefinition(name=TRAINING_SETS)


def shard_keys(count: int) -> list[str]:
    return [f"{i:03d}" for i in range(count)]


@dataclass(frozen=True)
class Partitions:
    """The partitions of a deployment with `shards` shards per sample."""

    shards: int
    shard_keys: list[str] = field(init=False)
    samples: dg.DynamicPartitionsDefinition = field(init=False, default=samples_partitions)
    sample_shard: dg.MultiPartitionsDefinition = field(init=False)
    training_sets: dg.DynamicPartitionsDefinition = field(init=False, default=training_sets_partitions)
    # "set" sorts before "shard" too, so keys read "<set>-<chunk length>|<shard>" and the IO
    # managers lay them out as they do samples.
    training_shard: dg.MultiPartitionsDefinition = field(init=False)

    def __post_init__(self):
        keys = shard_keys(self.shards)
        object.__setattr__(self, "shard_keys", keys)
        # Dimension names sort as sample < shard, so partition keys read "<sample>|<shard>".
        object.__setattr__(
            self, "sample_shard", dg.MultiPartitionsDefinition({"sample": samples_partitions, "shard": dg.StaticPartitionsDefinition(keys)})
        )
        training_shard = dg.MultiPartitionsDefinition({"set": training_sets_partitions, "shard": dg.StaticPartitionsDefinition(keys)})
        object.__setattr__(self, "training_shard", training_shard)

    def shard_partitions(self, sample: str) -> list[dg.MultiPartitionKey]:
        return [dg.MultiPartitionKey({"sample": sample, "shard": shard}) for shard in self.shard_keys]


# A shard asset reads the one sample-level partition of its sample; a sample asset reads all shards.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    by_sample = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="sample")
    by_training_set = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="set")


def sample_and_shard(partition_key: str) -> tuple[str, str]:
    """(sample, shard) of a "sample|shard" key (a MultiPartitionKey, or the plain string a run
    launched with a partition tag hands over)."""
    sample, _, shard = str(partition_key).rpartition("|")
    return sample, shard
