"""GPU steps: a concurrency pool bounds how many run at once; a device lease picks which device.

Dagster's pool "gpu" (limit STEPS_PER_DEVICE x device count on one host, see dagster.yaml) makes
extra GPU steps wait visibly in the UI, across every run however it was started. Inside a step,
`GpuResource.lease` takes an OS lock on one specific device (virnucpro_assets.gpu.leases), waiting
while every device is held, records it in the run's tags and the step's metadata, and releases it
when the embedding is done or the step's process dies. Steps run in their run's
process (the in-process executor, see definitions.py), so killing a run kills its step with it.
With the Celery executor (virnucpro_assets.pipeline.executors) a step runs in a GPU worker pinned to
one device: the lease is then on that device, and the pool's limit is the GPU workers of all hosts.
A device is recorded by its identity (host name + UUID, virnucpro_assets.gpu.inventory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from virnucpro_assets import settings
from virnucpro_assets.gpu.inventory import Device, discover_devices
from virnucpro_assets.gpu.leases import lease_device
from virnucpro_assets.pipeline.coordination import watch_abandoned_runs

GPU_POOL = "gpu"
# A step holds its pool slot from its start to its end, its device only while it embeds. With one
# slot per device, the next step could start only once the last had written its output, and then
# read its own input before taking the device: 2.2 s of idle device per hand-over on an H200
# (benchmarks/README.md). A second slot per device lets the next step do that while the device
# works; the lease still lets one step at a time use a device.
STEPS_PER_DEVICE = 2
DEVICE_TAG_PREFIX = "virnucpro/device."


def default_lease_dir() -> Path:
    return settings.instance_directory() / "gpu-leases"


def set_gpu_pool_limit(instance: dg.DagsterInstance, limit: int | None = None) -> int:
    """Size the instance's GPU pool to `limit`, else to STEPS_PER_DEVICE per device of this
    machine; returns the limit."""
    limit = STEPS_PER_DEVICE * len(discover_devices()) if limit is None else limit
    instance.event_log_storage.set_concurrency_slots(GPU_POOL, limit)
    return limit


class GpuResource(dg.ConfigurableResource):
    """Leases one device per GPU step (see virnucpro_assets.gpu.leases)."""

    lease_dir: str = ""
    _stop_watching: Callable[[], None] | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A run with a GPU step frees the pool slots of dead runs, at its start and while its steps
        wait on the pool (see virnucpro_assets.pipeline.coordination)."""
        if context.run is not None and context.instance is not None:
            self._stop_watching = watch_abandoned_runs(context.instance, context.run.run_id)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._stop_watching is not None:
            self._stop_watching()

    @contextmanager
    def lease(self, context: dg.AssetExecutionContext) -> Iterator[Device]:
        step = context.asset_key.to_user_string()
        holder = {"run_id": context.run.run_id, "asset": step, "partition": context.partition_key}
        directory = Path(self.lease_dir) if self.lease_dir else default_lease_dir()
        waiting = lambda seconds: context.log.info(f"every device is held by another GPU step: waiting for one ({seconds:.0f} s so far)")  # noqa: E731
        with lease_device(discover_devices(), directory, holder, on_wait=waiting) as device:
            context.log.info(f"{step} [{context.partition_key}] runs on {device.identity} ({device.name})")
            context.instance.add_run_tags(context.run.run_id, {DEVICE_TAG_PREFIX + step: device.identity})
            yield device
