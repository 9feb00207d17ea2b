"""A host's Celery workers (`virnucpro-assets worker`): one per GPU, pinned to it, one task at a
time, on the queue `gpu`; and, if asked, one on the queue `cpu` taking N tasks at once.

Each is `dagster-celery worker start` (Dagster's own worker: the celery app `dagster_celery.app`),
with the executor's config (virnucpro_assets.pipeline.executors.celery_config) written to
$DAGSTER_HOME/celery.yaml so that workers and runs agree on the broker. Both dagster-celery and the
`celery` it starts run on this process's interpreter as modules, so that workers start the same from
a virtual environment and from packages on a PYTHONPATH (`pip install --target`, no console
scripts). A GPU worker sees only its device: CUDA_VISIBLE_DEVICES is set to the device's UUID
("GPU-…"; "fake-<i>" for a simulated one), so inside it the device is cuda:0 and its identity
(host + UUID) is still its own.

This process supervises them: SIGTERM or SIGINT stops them all (Celery's warm shutdown, then SIGKILL
after STOP_TIMEOUT_S). A worker that exits on its own after running for STARTUP_S is started again:
Celery 5.7's worker can exit ("Unrecoverable error: AttributeError ... 'hostname'") when the broker
connection drops while it holds an unacknowledged step, after finishing that step (warm shutdown);
without a restart its queue on this host would be left with no worker. One that exits sooner (a
configuration error) stops the others and this command fails, naming it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from virnucpro_assets.errors import VirnucproError
from virnucpro_assets.gpu.inventory import Device, discover_devices
from virnucpro_assets.pipeline.executors import CPU_QUEUE, GPU_QUEUE, celery_config
from virnucpro_assets.processes import group_alive
from virnucpro_assets.settings import Settings, host_name

STOP_TIMEOUT_S = 30
STARTUP_S = 30


@dataclass(frozen=True)
class Worker:
    name: str
    queue: str
    concurrency: int
    env: dict[str, str | None]  # set on top of this process's environment (None: removed)

    def describe(self) -> str:
        pinned = f", CUDA_VISIBLE_DEVICES={self.env['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in self.env else ""
        return f"{self.name} (queue {self.queue}, concurrency {self.concurrency}{pinned})"


def select_devices(gpus: str) -> list[Device]:
    """`all`, `none`, or positions in this host's inventory (`0,1`: its first two devices)."""
    if gpus == "none":
        return []
    devices = [d for d in discover_devices() if d.name != "cpu"]
    if not devices and gpus != "none":
        raise VirnucproError(f"--gpus {gpus}: this host has no GPU (CUDA sees none); start CPU workers with --gpus none --cpu N")
    if gpus == "all":
        return devices
    positions = [part.strip() for part in gpus.split(",") if part.strip()]
    if not positions or not all(p.isdigit() and int(p) < len(devices) for p in positions):
        raise VirnucproError(f"--gpus {gpus}: give all, none, or device numbers from 0 to {len(devices) - 1} separated by commas")
    return [devices[int(p)] for p in dict.fromkeys(positions)]


def plan_workers(devices: list[Device], cpu: int) -> list[Worker]:
    # VIRNUCPRO_GPUS names ordinals of the whole machine: inside a pinned worker there is one device.
    pinned = lambda device: {"CUDA_VISIBLE_DEVICES": device.uuid, "VIRNUCPRO_GPUS": None}  # noqa: E731
    workers = [Worker(f"gpu.{device.uuid or device.name}.{host_name()}", GPU_QUEUE, 1, pinned(device)) for device in devices]
    if cpu:
        workers.append(Worker(f"cpu.{host_name()}", CPU_QUEUE, cpu, {}))
    if not workers:
        raise VirnucproError("nothing to start: give --gpus all|0,1 and/or --cpu N")
    return workers


def write_worker_config(home: Path, settings: Settings) -> Path:
    if settings.executor != "celery":
        raise VirnucproError("workers take steps of the celery executor: set VIRNUCPRO_EXECUTOR=celery and VIRNUCPRO_CELERY_BROKER")
    path = home / "celery.yaml"
    path.write_text(yaml.safe_dump({"execution": {"config": celery_config(settings)}}, sort_keys=True))
    return path


def worker_command(worker: Worker, config: Path) -> list[str]:
    # dagster-celery's CLI as a module (its console script's entry point, dagster_celery.cli:main).
    # The code location is imported once by the worker's main process (`-i`), before it forks the
    # processes that run steps: they, and one started again after a lost one, start with it loaded.
    # Importing it initializes no CUDA, so the forked processes can still use the GPU.
    return [
        sys.executable, "-m", "dagster_celery.cli", "worker", "start", "-A", "dagster_celery.app", "-q", worker.queue, "-y", str(config),
        "-n", worker.name, "-l", "INFO", "-i", "virnucpro_assets.definitions",
        "--", f"--concurrency={worker.concurrency}", "--pool=prefork",
    ]  # fmt: skip


def celery_launcher(directory: Path) -> Path:
    """dagster-celery starts the Celery worker as `celery` from PATH: write `directory/bin/celery`,
    which runs this interpreter's Celery (`python -m celery`), and return its directory, to go first
    on PATH. (A virtual environment has a `celery` script beside its interpreter; packages installed
    with `pip install --target` onto a PYTHONPATH have none there.)"""
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    # Written under another name and renamed, so that a second `worker` command on this DAGSTER_HOME never runs half of it.
    written = bin_dir / f".celery.{os.getpid()}.tmp"
    written.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m celery "$@"\n')
    written.chmod(0o755)
    written.replace(bin_dir / "celery")
    return bin_dir


def run_workers(workers: list[Worker], config: Path) -> int:
    """Start the workers and supervise them until a signal or until one exits (see the module doc)."""
    path = f"{celery_launcher(config.parent)}{os.pathsep}{os.environ.get('PATH', '')}"
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda number, _: stopping.append(number))
    signal.signal(signal.SIGINT, lambda number, _: stopping.append(number))
    running: list[tuple[Worker, subprocess.Popen, float]] = []

    def start(worker: Worker) -> tuple[Worker, subprocess.Popen, float]:
        env = {**os.environ, "PATH": path, **worker.env}
        # Its own process group: dagster-celery starts `celery` as its child, and both must stop.
        process = subprocess.Popen(
            worker_command(worker, config), env={k: v for k, v in env.items() if v is not None}, start_new_session=True
        )
        print(f"started worker {worker.describe()}: pid {process.pid}", flush=True)
        return worker, process, time.monotonic()

    try:
        running.extend(start(worker) for worker in workers)
        while not stopping:
            for index, (worker, process, started) in enumerate(running):
                if process.poll() is None or stopping:
                    continue
                if time.monotonic() - started < STARTUP_S:
                    print(f"virnucpro-assets: error: worker {worker.name} exited with status {process.returncode} "
                          f"within {STARTUP_S} s of its start; stopping the others", file=sys.stderr)  # fmt: skip
                    return 1
                print(f"worker {worker.name} (pid {process.pid}) exited with status {process.returncode}; starting it again", flush=True)
                running[index] = start(worker)
            time.sleep(0.5)
        return 0
    finally:
        stop_workers([process for _, process, _ in running])


def stop_workers(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to each worker's process group (Celery's warm shutdown: a step in progress
    finishes), SIGKILL to what is left after STOP_TIMEOUT_S."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        while (process.poll() is None or group_alive(process.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, number)
