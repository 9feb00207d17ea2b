"""GPU coordination overhead: simulated devices, a stand-in GPU step of known duration, the real
daemon, queued run coordinator, gpu pool and device leases of dagster.yaml / virnucpro_assets.

    python -m benchmarks.coordination [--devices 4] [--partitions 16] [--step-seconds 60]

Prints one JSON line: the device-busy fraction (lease time over the span from the first lease to
the last release, all devices) and the hand-off overhead (from one step releasing a device to the
next step leasing it), mean and max.
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--step-seconds", type=float, default=60)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "dagster_home"
        home.mkdir()
        shutil.copyfile(CHECKOUT / "dagster.yaml", home / "dagster.yaml")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "VIRNUCPRO_FAKE_GPUS": str(args.devices),
            "BENCH_PARTITIONS": str(args.partitions),
            "BENCH_STEP_SECONDS": str(args.step_seconds),
        }
        os.environ.update(env)
        import dagster as dg

        from benchmarks.coordination_defs import PARTITIONS
        from virnucpro_assets.pipeline.gpu import set_gpu_pool_limit

        workspace = Path(scratch) / "workspace.yaml"
        workspace.write_text("load_from:\n  - python_module: benchmarks.coordination_defs\n")
        with dg.DagsterInstance.get() as instance:
            set_gpu_pool_limit(instance)
            with running_daemon(env, workspace):
                started = time.time()
                subprocess.run(
                    [str(BIN / "dagster"), "job", "backfill", "-w", str(workspace), "-j", "stand_in",
                     "--partitions", ",".join(PARTITIONS), "--noprompt"],
                    env=env, cwd=CHECKOUT, check=True, capture_output=True,
                )
                while True:
                    runs = [r.dagster_run for r in instance.get_run_records()]
                    if len(runs) == len(PARTITIONS) and all(r.is_finished for r in runs):
                        break
                    time.sleep(2)
                wall = time.time() - started
                leases = [
                    record.asset_materialization.metadata
                    for record in instance.fetch_materializations(dg.AssetKey("stand_in_gpu_step"), limit=1000).records
                ]

    by_device = defaultdict(list)
    for lease in leases:
        by_device[lease["device"].value].append((lease["leased_at"].value, lease["released_at"].value))
    handoffs = []
    for intervals in by_device.values():
        intervals.sort()
        handoffs += [later[0] - earlier[1] for earlier, later in zip(intervals, intervals[1:])]
        assert all(h >= 0 for h in handoffs), "two steps held one device at once"
    first = min(start for intervals in by_device.values() for start, _ in intervals)
    last = max(end for intervals in by_device.values() for _, end in intervals)
    busy = sum(end - start for intervals in by_device.values() for start, end in intervals)
    emit(
        benchmark="coordination",
        devices=args.devices,
        partitions=len(leases),
        step_seconds=args.step_seconds,
        devices_used=len(by_device),
        busy_fraction=round(busy / (len(by_device) * (last - first)), 3),
        handoff_overhead_mean_s=round(sum(handoffs) / len(handoffs), 2) if handoffs else None,
        handoff_overhead_max_s=round(max(handoffs), 2) if handoffs else None,
        wall_s=round(wall, 1),
        ideal_s=round(args.step_seconds * -(-args.partitions // args.devices), 1),
    )


if __name__ == "__main__":
    main()
