"""Housekeeping of GPU coordination that Dagster's run monitoring does not cover.

A run started in-process by `dagster asset materialize` has no run launcher watching it: if its
process is killed, the run stays STARTED and its GPU pool slot stays claimed for good. This sensor
finds runs holding pool slots whose recorded processes are all gone from this machine, marks them
failed and frees their slots. (Device leases need no such help: the kernel drops them.)
"""

import os

import dagster as dg

RUN_PROCESS_EVENTS = {dg.DagsterEventType.RUN_START, dg.DagsterEventType.STEP_WORKER_STARTED, dg.DagsterEventType.STEP_START}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie is gone too
    except FileNotFoundError:
        return False


def release_abandoned_slots(instance: dg.DagsterInstance) -> list[str]:
    """Fail unfinished runs that hold pool slots but whose processes are all dead; free the slots
    of those and of finished runs. Returns the run ids whose slots were freed."""
    storage = instance.event_log_storage
    freed = []
    for run_id in storage.get_concurrency_run_ids():
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            if run.status != dg.DagsterRunStatus.STARTED:
                continue
            records = instance.get_records_for_run(run_id, of_type=RUN_PROCESS_EVENTS).records
            pids = {r.event_log_entry.dagster_event.pid for r in records if r.event_log_entry.dagster_event.pid}
            if not pids or any(_process_alive(pid) for pid in pids):
                continue
            instance.report_run_failed(run, f"the run's processes {sorted(pids)} are gone; its GPU pool slots were freed")
        storage.free_concurrency_slots_for_run(run_id)
        freed.append(run_id)
    return freed


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def release_abandoned_gpu_slots(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Frees GPU pool slots held by runs whose processes died without telling Dagster."""
    freed = release_abandoned_slots(context.instance)
    return dg.SkipReason(f"freed the slots of runs {', '.join(freed)}" if freed else "no abandoned slots")
