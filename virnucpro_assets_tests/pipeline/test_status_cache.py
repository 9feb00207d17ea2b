"""A cached partition status that lost a materialization (Dagster issue 27203, seen in
test_kill_recovery) keeps automation from requesting what depends on it, until
`repair_partition_status` rebuilds it."""

import warnings

import dagster as dg

from virnucpro_assets.pipeline.status_cache import lost_partitions, repair_partition_status

SAMPLES = dg.DynamicPartitionsDefinition(name="samples")
SHARDS = dg.MultiPartitionsDefinition({"sample": SAMPLES, "shard": dg.StaticPartitionsDefinition(["000", "001"])})


@dg.asset(partitions_def=SHARDS)
def predictions() -> int:
    return 1


@dg.asset(
    partitions_def=SAMPLES,
    deps=[dg.AssetDep(predictions, partition_mapping=dg.MultiToSingleDimensionPartitionMapping("sample"))],
    automation_condition=dg.AutomationCondition.missing() & ~dg.AutomationCondition.any_deps_missing(),
)
def sample_report() -> None:
    pass


REPAIR = repair_partition_status(5)
DEFS = dg.Definitions(assets=[predictions, sample_report], sensors=[REPAIR])


def report_requested(instance) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        result = dg.evaluate_automation_conditions(defs=DEFS, instance=instance)
    return result.get_requested_partitions(sample_report.key) == {"s"}


def test_a_cache_that_lost_a_shard_is_found_and_rebuilt_so_that_automation_goes_on(tmp_path):
    instance = dg.DagsterInstance.local_temp(str(tmp_path))
    instance.add_dynamic_partitions("samples", ["s"])
    for shard in ("000", "001"):
        dg.materialize([predictions], instance=instance, partition_key=dg.MultiPartitionKey({"sample": "s", "shard": shard}))
    assert report_requested(instance)  # the status is read, and cached, once both shards are in

    # What the race leaves: the cache's cursor past shard 001's materialization, shard 001 not in it.
    [record] = instance.get_asset_records([predictions.key])
    cached = record.asset_entry.cached_status
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        kept = SHARDS.empty_subset().with_partition_keys([dg.MultiPartitionKey({"sample": "s", "shard": "000"})])
    instance.update_asset_cached_status_data(predictions.key, cached._replace(serialized_materialized_partition_subset=kept.serialize()))
    assert not report_requested(instance)  # stuck: shard 001 looks missing, however long one waits

    assert lost_partitions(instance, {predictions.key: SHARDS, sample_report.key: SAMPLES}) == {predictions.key: ["s|001"]}
    with dg.build_sensor_context(instance=instance, definitions=DEFS) as context:
        assert "predictions: s|001" in REPAIR(context).skip_message
    assert report_requested(instance)
    with dg.build_sensor_context(instance=instance, definitions=DEFS) as context:
        assert REPAIR(context).skip_message == "every cached partition status holds its materializations"
