"""GPU steps over hosts through Celery against the single-host path: stand-in GPU steps of known
length (benchmarks/coordination_defs.py: each holds its device lease for --step-seconds), one per
partition, backfilled through the daemon.

    python -m benchmarks.distributed [--hosts 2] [--devices-per-host 2] [--partitions 16] [--step-seconds 10]

- single host: one instance (sqlite), the in-process executor, hosts x devices-per-host simulated
  devices on one host, the gpu pool at that count (what benchmarks/coordination.py measures);
- Celery: a PostgreSQL instance and a Redis broker started here (benchmarks/servers.py), --hosts
  simulated hosts (own DAGSTER_HOME and host name) each running `virnucpro-assets worker --gpus all`
  over its --devices-per-host simulated devices, the executor VIRNUCPRO_EXECUTOR=celery, the gpu
  pool at all GPU workers.

Prints one JSON line per path: busy fraction per device used and over all devices (lease time
over the span from the first lease to the last release; a device never used counts as idle),
hand-off latency (one step releasing a device to the next step leasing it: for Celery, the
worker's result, its next task and the step's start in the worker), wall time from the backfill to
the last run's end against the ideal; then one line comparing the two.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import emit
from benchmarks.coordination import CHECKOUT, backfill_stand_in, lease_figures, stand_in_env
from benchmarks.servers import postgres_server, redis_server, running_workers, wait_for_workers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--devices-per-host", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--step-seconds", type=float, default=10)
    args = parser.parse_args()
    devices = args.hosts * args.devices_per_host

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        home = scratch / "single"
        home.mkdir()
        shutil.copyfile(CHECKOUT / "dagster.yaml", home / "dagster.yaml")
        env = stand_in_env(home, args.partitions, args.step_seconds, VIRNUCPRO_FAKE_GPUS=str(devices))
        single = report("single host, in-process", devices, args, *backfill_stand_in(env, home, devices))
        celery = report("celery", devices, args, *celery_path(scratch, args), hosts=args.hosts)
    emit(
        benchmark="distributed_comparison",
        busy_fraction_celery_over_single=round(celery["busy_fraction"] / single["busy_fraction"], 3),
        handoff_mean_s_celery_minus_single=round(celery["handoff_latency_mean_s"] - single["handoff_latency_mean_s"], 2)
        if celery["handoff_latency_mean_s"] is not None and single["handoff_latency_mean_s"] is not None
        else None,
        wall_celery_over_single=round(celery["wall_s"] / single["wall_s"], 3),
    )


def celery_path(scratch: Path, args) -> tuple[list[dict], float]:
    from contextlib import ExitStack

    from virnucpro_assets.deployment.instance import write_instance_config

    with ExitStack() as stack:
        postgres = stack.enter_context(postgres_server())
        broker = stack.enter_context(redis_server(scratch / "redis"))
        envs = []
        for index in range(args.hosts):
            home = scratch / f"host-{index}"
            write_instance_config(home, postgres.url)
            env = stand_in_env(
                home, args.partitions, args.step_seconds,
                VIRNUCPRO_FAKE_GPUS=str(args.devices_per_host), VIRNUCPRO_HOST_NAME=f"host-{index}",
                VIRNUCPRO_EXECUTOR="celery", VIRNUCPRO_CELERY_BROKER=broker.url,
            )  # fmt: skip
            stack.enter_context(running_workers(env, home / "workers.log", "--gpus", "all"))
            envs.append(env)
        wait_for_workers([Path(env["DAGSTER_HOME"]) / "workers.log" for env in envs], args.hosts * args.devices_per_host)
        # The first host also runs the daemon, as in the README's two-host set-up.
        return backfill_stand_in(envs[0], Path(envs[0]["DAGSTER_HOME"]), args.hosts * args.devices_per_host)


def report(path: str, devices: int, args, leases: list[dict], wall: float, hosts: int = 1) -> dict:
    figures = lease_figures(leases, devices)
    return emit(
        benchmark="distributed",
        path=path,
        hosts=hosts,
        devices=devices,
        partitions=len(leases),
        step_seconds=args.step_seconds,
        devices_used=figures["devices_used"],
        busy_fraction=figures["busy_fraction"],
        busy_fraction_per_device=figures["busy_fraction_per_device"],
        steps_per_device=figures["steps_per_device"],
        handoff_latency_mean_s=figures["handoff_overhead_mean_s"],
        handoff_latency_max_s=figures["handoff_overhead_max_s"],
        wall_s=round(wall, 1),
        ideal_s=round(args.step_seconds * -(-args.partitions // devices), 1),
    )


if __name__ == "__main__":
    main()
