"""Runs whose process is gone: marked failed, and their pool slots freed.

Dagster hears that a run died from whoever launched it: the code server that started a queued run
reports it failed when its process exits. A run started in-process (`dagster asset materialize`,
`virnucpro-assets materialize`) has no one watching it: killed, it stays STARTED, its partitions
stay in progress, and a GPU pool slot it claimed stays claimed, so the next GPU step waits for good.

So every run records, when it starts, the process that runs it: host name, boot id, pid and the
process's start time (the tag `virnucpro/process`, see `record_run_process`). `release_abandoned_runs`
marks failed, through the instance's `report_run_failed`, each STARTED run recorded on this host
whose process is gone (exited, a zombie, or its pid now another process), and frees the pool slots
of finished runs. A run recorded on another host, or not recorded at all, is never failed here.
The host is `VIRNUCPRO_HOST_NAME` when set (tests simulate hosts), else the machine's name.

It runs from the sensor `release_abandoned_gpu_slots` (every 30 s while the daemon runs), at the
start of `virnucpro-assets materialize` and `devices`, and in every run with a GPU step: at its start
and every few seconds while one of its steps waits on the pool (`watch_abandoned_runs`), so that a
waiting GPU step frees the slot of a dead run itself. (Device leases need no such help: the kernel
drops a dead process's locks.)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from virnucpro_assets.processes import boot_id, process_alive, process_start
from virnucpro_assets.settings import host_name

PROCESS_TAG = "virnucpro/process"
RUN_PROCESS_EVENTS = {dg.DagsterEventType.RUN_START, dg.DagsterEventType.STEP_WORKER_STARTED, dg.DagsterEventType.STEP_START}
WATCH_INTERVAL_S = 5.0


def this_process() -> dict:
    pid = os.getpid()
    return {"host": host_name(), "boot": boot_id(), "pid": pid, "start": process_start(pid)}


def record_run_process(instance: dg.DagsterInstance, run_id: str) -> None:
    """Tag the run with the process running it (called at the start of every run). A step that a
    Celery worker runs is not the run's process (that is the run worker orchestrating the steps,
    watched by whoever launched it), so it records nothing."""
    if _in_celery_task():
        return
    instance.add_run_tags(run_id, {PROCESS_TAG: json.dumps(this_process(), sort_keys=True)})


def _in_celery_task() -> bool:
    celery = sys.modules.get("celery")
    # current_task is a proxy, never None itself: false when no task runs in this thread.
    task = celery.current_task if celery is not None else None
    return bool(task) and task.request.id is not None


def run_process_gone(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why the run's process is known to be gone ("pid 123 on host h exited"), or None when it
    may be alive: running, on another host, or never recorded."""
    try:
        recorded = json.loads(run.tags[PROCESS_TAG])
        host, boot, pid, start = recorded["host"], recorded["boot"], int(recorded["pid"]), recorded["start"]
    except (KeyError, ValueError, TypeError):
        return None
    if host != host_name():  # another host's (or simulated host's) runs are its own to release
        return None
    if boot != boot_id():
        reason = f"host {host} restarted since pid {pid} ran it"
    elif process_start(pid) is None:
        reason = f"its process (pid {pid} on host {host}) is gone"
    elif process_start(pid) != start:
        reason = f"its process (pid {pid} on host {host}) is gone; the pid is another process now"
    else:
        return None
    # Processes its executor started for steps, if any (the in-process executor starts none), must
    # be gone too.
    records = instance.get_records_for_run(run.run_id, of_type=RUN_PROCESS_EVENTS).records
    others = {r.event_log_entry.dagster_event.pid for r in records} - {pid, None}
    if boot == boot_id() and any(process_alive(other) for other in others):
        return None
    return reason


@dataclass
class Released:
    failed: list[str] = field(default_factory=list)  # runs marked failed (their process is gone)
    freed: list[str] = field(default_factory=list)  # finished runs whose pool slots were freed

    def __bool__(self) -> bool:
        return bool(self.failed or self.freed)

    def __str__(self) -> str:
        return "; ".join(
            [f"marked failed (process gone): {', '.join(self.failed)}"] * bool(self.failed)
            + [f"pool slots freed: {', '.join(self.freed)}"] * bool(self.freed)
        )


def release_abandoned_runs(instance: dg.DagsterInstance) -> Released:
    """Mark failed the STARTED runs of this host whose process is gone, and free the pool slots
    of those and of every finished run."""
    released = Released()
    for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        reason = run_process_gone(instance, run)
        if reason is None:
            continue
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status != dg.DagsterRunStatus.STARTED:
            continue
        instance.report_run_failed(current, f"Marked failed by virnucpro-assets: {reason} while the run was STARTED.")
        released.failed.append(run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        for run_id in storage.get_concurrency_run_ids():
            run = instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                storage.free_concurrency_slots_for_run(run_id)
                released.freed.append(run_id)
    return released


def watch_abandoned_runs(instance: dg.DagsterInstance, run_id: str, interval_s: float = WATCH_INTERVAL_S) -> Callable[[], None]:
    """Release abandoned runs now, and again every `interval_s` while a step of run `run_id`
    waits on a pool, in a background thread; returns the function that stops it. Without a daemon,
    this is what frees a slot a killed run kept, for the step waiting on it."""
    release_abandoned_runs(instance)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(interval_s):
            try:
                if _waiting_on_a_pool(instance, run_id):
                    release_abandoned_runs(instance)
            except Exception:  # a failed look must never fail the run; the next one may succeed
                logging.getLogger(__name__).exception("looking for abandoned runs failed")

    thread = threading.Thread(target=watch, name="virnucpro-abandoned-runs", daemon=True)
    thread.start()

    def stop_watching() -> None:
        stop.set()
        thread.join(interval_s + 5)

    return stop_watching


def _waiting_on_a_pool(instance: dg.DagsterInstance, run_id: str) -> bool:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or run_id not in storage.get_concurrency_run_ids():
        return False
    return any(
        step.run_id == run_id and step.assigned_timestamp is None
        for pool in storage.get_concurrency_keys()
        for step in storage.get_concurrency_info(pool).pending_steps
    )


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Marks failed the runs of this host whose process died without telling Dagster (in-process "
        "runs killed), and frees the pool slots of finished runs (see virnucpro_assets.pipeline.coordination)."
    ),
)
def release_abandoned_gpu_slots(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    released = release_abandoned_runs(context.instance)
    return dg.SkipReason(str(released) if released else "no abandoned runs")
