"""Where the time of a sample goes between registering it and its report, from the instance's event
log and the GPU steps' recorded lease times: consecutive phases that add up to the whole.

- ingest: from the start (before `add-sample`) to `sample_reads` materialized;
- launch: from there to the first shard run's start (submitting the runs, the queue, the run's process);
- before_gpu: from there to the first GPU step holding a device (translation of the first shard);
- embedding_phase: from the first lease to the last release (`idle_gpu_s`: time inside it in which
  no device was held, summed over the devices used);
- after_gpu: from the last release to the last shard run's end (merged features, predictions);
- report: from there to `sample_report` materialized (its run's launch included).
"""

from __future__ import annotations

import dagster as dg


def phases(instance, started: float, gpu_steps: list[dict], shard_runs: list) -> dict:
    """`gpu_steps`: dicts with `device`, `start` and `end` (epoch seconds of the lease);
    `shard_runs`: the shard runs (DagsterRun). Seconds per phase, rounded to 0.1 s."""

    def materialized(asset: str) -> float:
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
        return records[0].timestamp

    run_records = instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id for run in shard_runs]))
    first_run_start = min(record.start_time for record in run_records)
    last_run_end = max(record.end_time for record in run_records)
    first_lease = min(step["start"] for step in gpu_steps)
    last_release = max(step["end"] for step in gpu_steps)
    marks = {
        "ingest": materialized("sample_reads"),
        "launch": first_run_start,
        "before_gpu": first_lease,
        "embedding_phase": last_release,
        "after_gpu": last_run_end,
        "report": materialized("sample_report"),
    }
    figures, previous = {}, started
    for phase, until in marks.items():
        figures[f"{phase}_s"] = round(until - previous, 1)
        previous = until
    idle = 0.0
    for device in {step["device"] for step in gpu_steps}:
        held = sorted((s["start"], s["end"]) for s in gpu_steps if s["device"] == device)
        idle += held[0][0] - first_lease + last_release - held[-1][1]
        idle += sum(max(0.0, later[0] - earlier[1]) for earlier, later in zip(held, held[1:]))
    figures["idle_gpu_s"] = round(idle, 1)
    figures["total_s"] = round(previous - started, 1)
    return figures


def automation_ticks(instance, since: float) -> dict:
    """The automation sensor's evaluations since `since`: how many, and how long each took (its
    interval, VIRNUCPRO_SENSOR_INTERVAL, and the time one takes are the latency automation adds at each hand-over)."""
    durations = []
    for state in instance.all_instigator_state():
        if state.instigator_name != "virnucpro_automation":
            continue
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1000):
            if tick.timestamp >= since and tick.end_timestamp:
                durations.append(tick.end_timestamp - tick.timestamp)
    return {
        "automation_ticks": len(durations),
        "automation_tick_mean_s": round(sum(durations) / len(durations), 2) if durations else None,
        "automation_tick_max_s": round(max(durations), 2) if durations else None,
    }
