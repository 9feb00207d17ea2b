"""Everything Dagster loads from this code location, built from the settings read once here."""

from __future__ import annotations

import dagster as dg

from virnucpro_assets.pipeline.assets.classify import classification_assets
from virnucpro_assets.pipeline.assets.embeddings import embedding_assets
from virnucpro_assets.pipeline.assets.ingest import ingest_assets
from virnucpro_assets.pipeline.assets.training import TrainingSettings, training_assets
from virnucpro_assets.pipeline.automation import automation_sensor
from virnucpro_assets.pipeline.checks import asset_checks
from virnucpro_assets.pipeline.coordination import release_abandoned_gpu_slots
from virnucpro_assets.pipeline.executors import executor_for
from virnucpro_assets.pipeline.jobs import shard_pipeline
from virnucpro_assets.pipeline.partitions import Partitions
from virnucpro_assets.pipeline.pool_recheck import cap_pool_recheck_interval
from virnucpro_assets.pipeline.resources import deployment_resources
from virnucpro_assets.pipeline.sensors import inbox_sensor, retry_failed_partitions
from virnucpro_assets.pipeline.status_cache import repair_partition_status
from virnucpro_assets.settings import Settings


def build_definitions(settings: Settings, partitions: Partitions) -> dg.Definitions:
    training, training_checks = training_assets(partitions, settings)
    return dg.Definitions(
        assets=[
            *ingest_assets(partitions),
            *embedding_assets(partitions.sample_shard, settings),
            *classification_assets(partitions, settings),
            *training,
        ],
        asset_checks=[*asset_checks(partitions), *training_checks],
        sensors=[
            inbox_sensor(settings.inbox, settings.inbox_follows_links, settings.sensor_interval),
            automation_sensor(settings.sensor_interval),
            repair_partition_status(settings.sensor_interval),
            release_abandoned_gpu_slots,
        ],
        schedules=[retry_failed_partitions],
        resources={
            **deployment_resources(settings),
            "training": TrainingSettings(block_size=settings.training_block_size, min_test_auroc=settings.min_test_auroc),
        },
        jobs=[shard_pipeline],
        # On one machine, parallelism comes from runs (one per partition, GPU steps spread over devices
        # by the pool), not from steps inside a run: a process per step would cost seconds of start-up
        # each and would leave orphaned GPU steps behind when a run is killed. Past one machine, steps
        # go to Celery workers (VIRNUCPRO_EXECUTOR, virnucpro_assets.pipeline.executors).
        executor=executor_for(settings),
    )


settings = Settings.from_environment()
cap_pool_recheck_interval(settings.pool_recheck_s)
partitions = Partitions(settings.shards)
defs = build_definitions(settings, partitions)
