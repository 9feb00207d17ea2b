"""GPU coordination overhead: simulated devices, a stand-in GPU step of known duration, the real
daemon, queued run coordinator, gpu pool and device leases of dagster.yaml / virnucpro_assets.

    python -m benchmarks.coordination [--devices 4] [--partitions 16] [--step-seconds 60] [--pool-recheck 15 1]

Per VIRNUCPRO_POOL_RECHECK_S given (Dagster's own backoff of up to 15 s between a blocked step's
checks, against the default cap of 1 s), one JSON line: the device-busy fraction (lease time over the span from the first lease to
the last release, all devices) and the hand-off overhead (from one step releasing a device to the
next step leasing it), mean and max; then a comparison. benchmarks/distributed.py runs the same over Celery workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import emit, running_daemon

CHECKOUT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def stand_in_env(home: Path, partitions: int, step_seconds: float, **settings: str) -> dict[str, str]:
    """The environment of every process of a stand-in run: the instance at `home`, the code location's knobs."""
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "BENCH_PARTITIONS": str(partitions),
        "BENCH_STEP_SECONDS": str(step_seconds),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")])),
        **settings,
    }


def backfill_stand_in(env: dict[str, str], scratch: Path, gpu_slots: int) -> tuple[list[dict], float]:
    """Backfill the stand-in job over every partition through a daemon of the instance in `env`,
    the gpu pool set to `gpu_slots`; returns each step's lease (device, leased_at, released_at)
    and the wall seconds from the backfill to the last run's end."""
    import dagster as dg

    from benchmarks.coordination_defs import partition_keys
    from virnucpro_assets.pipeline.gpu import set_gpu_pool_limit

    partitions = partition_keys(int(env["BENCH_PARTITIONS"]))
    workspace = scratch / "workspace.yaml"
    workspace.write_text("load_from:\n  - python_module: benchmarks.coordination_defs\n")
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        set_gpu_pool_limit(instance, gpu_slots)
        with running_daemon(env, workspace):
            started = time.time()
            subprocess.run(
                [sys.executable, "-m", "dagster", "job", "backfill", "-w", str(workspace), "-j", "stand_in",
                 "--partitions", ",".join(partitions), "--noprompt"],
                env=env, cwd=CHECKOUT, check=True, capture_output=True,
            )  # fmt: skip
            while True:
                runs = [r.dagster_run for r in instance.get_run_records()]
                if len(runs) == len(partitions) and all(r.is_finished for r in runs):
                    break
                time.sleep(1)
            wall = time.time() - started
            failed = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
            if failed:
                raise RuntimeError(
                    f"{len(failed)} stand-in runs did not succeed (first {failed[0]}): see the instance at {env['DAGSTER_HOME']}"
                )
            records = instance.fetch_materializations(dg.AssetKey("stand_in_gpu_step"), limit=10_000).records
            return [{k: v.value for k, v in record.asset_materialization.metadata.items()} for record in records], wall


def lease_figures(leases: list[dict], devices: int) -> dict:
    """Busy fraction (each device's lease time over the span from the first lease of any device to
    the last release) per device used and over all `devices` (one never used counts as idle), and
    hand-offs (one step releasing a device to the next step leasing it)."""
    by_device = defaultdict(list)
    for lease in leases:
        by_device[lease["device"]].append((lease["leased_at"], lease["released_at"]))
    handoffs = []
    for intervals in by_device.values():
        intervals.sort()
        handoffs += [later[0] - earlier[1] for earlier, later in zip(intervals, intervals[1:])]
    if any(h < 0 for h in handoffs):
        raise AssertionError("two steps held one device at once")
    first = min(start for intervals in by_device.values() for start, _ in intervals)
    span = max(end for intervals in by_device.values() for _, end in intervals) - first
    busy = {device: sum(end - start for start, end in intervals) for device, intervals in sorted(by_device.items())}
    return {
        "devices_used": len(by_device),
        "busy_fraction": round(sum(busy.values()) / (devices * span), 3),
        "busy_fraction_per_device": {device: round(seconds / span, 3) for device, seconds in busy.items()},
        "steps_per_device": {device: len(intervals) for device, intervals in sorted(by_device.items())},
        "handoff_overhead_mean_s": round(sum(handoffs) / len(handoffs), 2) if handoffs else None,
        "handoff_overhead_max_s": round(max(handoffs), 2) if handoffs else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--step-seconds", type=float, default=60)
    parser.add_argument(
        "--pool-recheck", type=float, nargs="+", default=[15.0, 1.0],
        help="VIRNUCPRO_POOL_RECHECK_S of each configuration (15: Dagster's own backoff; 1: the default)",
    )  # fmt: skip
    args = parser.parse_args()

    lines = []
    for recheck in args.pool_recheck:
        with tempfile.TemporaryDirectory() as scratch:
            home = Path(scratch) / "dagster_home"
            home.mkdir()
            shutil.copyfile(CHECKOUT / "dagster.yaml", home / "dagster.yaml")
            env = stand_in_env(
                home, args.partitions, args.step_seconds, VIRNUCPRO_FAKE_GPUS=str(args.devices), VIRNUCPRO_POOL_RECHECK_S=str(recheck)
            )
            leases, wall = backfill_stand_in(env, Path(scratch), args.devices)
        figures = lease_figures(leases, args.devices)
        lines.append(
            emit(
                benchmark="coordination",
                pool_recheck_s=recheck,
                devices=args.devices,
                partitions=len(leases),
                step_seconds=args.step_seconds,
                devices_used=figures["devices_used"],
                busy_fraction=figures["busy_fraction"],
                handoff_overhead_mean_s=figures["handoff_overhead_mean_s"],
                handoff_overhead_max_s=figures["handoff_overhead_max_s"],
                wall_s=round(wall, 1),
                ideal_s=round(args.step_seconds * -(-args.partitions // args.devices), 1),
            )
        )
    if len(lines) > 1:
        first, last = lines[0], lines[-1]
        emit(
            benchmark="coordination_comparison",
            pool_recheck_s=[first["pool_recheck_s"], last["pool_recheck_s"]],
            handoff_mean_s=[first["handoff_overhead_mean_s"], last["handoff_overhead_mean_s"]],
            busy_fraction=[first["busy_fraction"], last["busy_fraction"]],
            wall_s=[first["wall_s"], last["wall_s"]],
        )


if __name__ == "__main__":
    main()
