"""Repairing Dagster's cached partition status when it has lost a materialization.

For each partitioned asset, Dagster caches which partitions are materialized, failed and in
progress, with the event-log id it is up to date to, and brings that summary up to date from the
event log when it is read. Under concurrent runs an update can be built from an asset record read
before a partition's materialization while recording a cursor past it (dagster-io/dagster#27203,
still open in Dagster 1.13): the partition goes from in progress to neither, and never enters the
cache. Automation reads the cache, so a sample whose shard looks unmaterialized never gets its
`sample_report`, silently. It happened in this project's kill-and-retry test, about one run in
three under load.

The sensor `repair_partition_status` looks for such partitions: materialized at or before the
cache's cursor, yet absent from its materialized set. It wipes those assets' caches (as `dagster
asset wipe-partitions-status-cache` does), and Dagster rebuilds them from the event log at the
next read.
"""

from __future__ import annotations

import dagster as dg

from virnucpro_assets.pipeline.sensors import minimum_interval


def lost_partitions(
    instance: dg.DagsterInstance, partitions_defs: dict[dg.AssetKey, dg.PartitionsDefinition]
) -> dict[dg.AssetKey, list[str]]:
    """Per asset, the materialized partitions that its cached status has passed over; assets whose
    cache is absent or was made for another partitions definition are Dagster's to rebuild."""
    lost = {}
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        for record in instance.get_asset_records(list(partitions_defs)):
            key, cached = record.asset_entry.asset_key, record.asset_entry.cached_status
            partitions_def = partitions_defs[key]
            if cached is None or cached.partitions_def_id != partitions_def.get_serializable_unique_identifier():
                continue
            in_cache = set(cached.deserialize_materialized_partition_subsets(partitions_def).get_partition_keys())
            passed_over = instance.get_materialized_partitions(key, before_cursor=cached.latest_storage_id + 1) - in_cache
            if passed_over:
                lost[key] = sorted(passed_over)
    return lost


def repair_partition_status(interval: int) -> dg.SensorDefinition:
    """The sensor that wipes a cached partition status that lost a materialization, every `interval`
    seconds (the automation sensor's, so that its next tick sees the repair)."""

    @dg.sensor(
        name="repair_partition_status",
        minimum_interval_seconds=minimum_interval(interval),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Rebuilds the cached partition status of an asset that lost a materialization under "
            "concurrent runs (Dagster issue 27203), which would leave automation waiting on it for good "
            "(see virnucpro_assets.pipeline.status_cache)."
        ),
    )
    def repair(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        graph = context.repository_def.asset_graph
        partitions_defs = {key: graph.get(key).partitions_def for key in graph.materializable_asset_keys if graph.get(key).partitions_def}
        lost = lost_partitions(context.instance, partitions_defs)
        if not lost:
            return dg.SkipReason("every cached partition status holds its materializations")
        context.instance.wipe_asset_cached_status(list(lost))
        found = "; ".join(f"{key.to_user_string()}: {', '.join(partitions)}" for key, partitions in lost.items())
        context.log.warning(f"cached partition status had lost materialized partitions, rebuilt: {found}")
        return dg.SkipReason(f"rebuilt the cached partition status of {found}")

    return repair
