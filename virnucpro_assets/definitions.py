"""Everything Dagster loads from this code location."""

from __future__ import annotations

import dagster as dg

from virnucpro_assets.pipeline.assets import classify, embeddings, ingest
from virnucpro_assets.pipeline.automation import automation_sensor
from virnucpro_assets.pipeline.checks import asset_checks
from virnucpro_assets.pipeline.coordination import release_abandoned_gpu_slots
from virnucpro_assets.pipeline.gpu import GpuResource
from virnucpro_assets.pipeline.jobs import shard_pipeline
from virnucpro_assets.pipeline.models import default_models
from virnucpro_assets.pipeline.resources import default_resources
from virnucpro_assets.pipeline.sensors import inbox_sensor, retry_failed_partitions

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest, embeddings, classify]),
    asset_checks=asset_checks,
    sensors=[inbox_sensor, automation_sensor, release_abandoned_gpu_slots],
    schedules=[retry_failed_partitions],
    resources={**default_resources(), "models": default_models(), "gpu": GpuResource()},
    jobs=[shard_pipeline],
    # Parallelism comes from runs (one per partition, GPU steps spread over devices by the pool),
    # not from steps inside a run: a process per step would cost seconds of start-up each and
    # would leave orphaned GPU steps behind when a run is killed.
    executor=dg.in_process_executor,
)
