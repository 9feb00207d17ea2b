"""A code location for benchmarks/coordination.py: one stand-in GPU step per partition that holds
a device lease for a known time, through the project's own pool and GpuResource."""

import os
import time

import dagster as dg

from virnucpro_assets.pipeline.gpu import GPU_POOL, GpuResource

PARTITIONS = [f"p{i:02d}" for i in range(int(os.environ.get("BENCH_PARTITIONS", "16")))]


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(PARTITIONS), pool=GPU_POOL)
def stand_in_gpu_step(context: dg.AssetExecutionContext, gpu: GpuResource) -> dg.MaterializeResult:
    with gpu.lease(context) as device:
        leased_at = time.time()
        time.sleep(float(os.environ.get("BENCH_STEP_SECONDS", "30")))
        released_at = time.time()
    return dg.MaterializeResult(metadata={"device": device.name, "leased_at": leased_at, "released_at": released_at})


defs = dg.Definitions(
    assets=[stand_in_gpu_step],
    jobs=[dg.define_asset_job("stand_in", selection=[stand_in_gpu_step])],
    resources={"gpu": GpuResource()},
    executor=dg.in_process_executor,
)
