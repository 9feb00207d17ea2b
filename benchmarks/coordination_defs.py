"""A code location for benchmarks/coordination.py and benchmarks/distributed.py: one stand-in GPU
step per partition that holds a device lease for a known time, through the project's own pool,
GpuResource, GPU step tags (the Celery queue `gpu`) and executor (VIRNUCPRO_EXECUTOR)."""

import os
import time

import dagster as dg

from virnucpro_assets.pipeline.executors import GPU_STEP_TAGS, executor_for
from virnucpro_assets.pipeline.gpu import GPU_POOL, GpuResource
from virnucpro_assets.pipeline.pool_recheck import cap_pool_recheck_interval
from virnucpro_assets.settings import Settings

settings = Settings.from_environment()
cap_pool_recheck_interval(settings.pool_recheck_s)


def partition_keys(count: int) -> list[str]:
    return [f"p{i:02d}" for i in range(count)]


PARTITIONS = partition_keys(int(os.environ.get("BENCH_PARTITIONS", "16")))


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(PARTITIONS), pool=GPU_POOL, op_tags=GPU_STEP_TAGS)
def stand_in_gpu_step(context: dg.AssetExecutionContext, gpu: GpuResource) -> dg.MaterializeResult:
    with gpu.lease(context) as device:
        leased_at = time.time()
        time.sleep(float(os.environ.get("BENCH_STEP_SECONDS", "30")))
        released_at = time.time()
    return dg.MaterializeResult(metadata={"device": device.identity, "leased_at": leased_at, "released_at": released_at})


defs = dg.Definitions(
    assets=[stand_in_gpu_step],
    jobs=[dg.define_asset_job("stand_in", selection=[stand_in_gpu_step])],
    resources={"gpu": GpuResource()},
    executor=executor_for(settings),
)
