"""What starts runs without a click: the inbox sensor, and a schedule that retries failed partitions.

The inbox (VIRNUCPRO_INBOX, default $DAGSTER_HOME/inbox) takes FASTA/FASTQ files, plain or compressed.
A file is taken once its size and modification time are the same at two evaluations in a row, so a
file still being copied waits; names starting with '.' or ending in .tmp/.part are never looked at,
so writing under such a name and renaming into place is always safe. A taken file is registered as
`virnucpro-assets add-sample` would (the same content under any name is one sample) and its
`sample_reads` run is started; declarative automation does the rest (see automation.py).

A file that cannot be registered (unreadable, not FASTA/FASTQ, a name taken by other content) is
reported once, in the sensor's tick log and as an observation of `sample_reads` naming the file and
the reason, and is looked at again only if it changes. No reason quotes a file's content. A symbolic
link whose target lies outside the inbox is ignored (noted once in the tick log) unless
VIRNUCPRO_INBOX_FOLLOW_LINKS=1; a link that is taken is registered as its target, under the link's
name. The sensor's cursor, which survives daemon restarts, holds what it knows of each file now in
the inbox, as JSON: `{"<file name>": {"signature": [size, mtime_ns], "state": "waiting" |
"registered" | "rejected" | "ignored", ...}}`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import dagster as dg

from virnucpro_assets.errors import VirnucproError
from virnucpro_assets.pipeline.partitions import SAMPLES, samples_partitions
from virnucpro_assets.pipeline.resources import StoreResource
from virnucpro_assets.samples import SampleRegistry, sample_name_from_path

IGNORED_SUFFIXES = (".tmp", ".part")
OUTSIDE_LINK = "a symbolic link to a file outside the inbox: ignored (VIRNUCPRO_INBOX_FOLLOW_LINKS=1 takes such links)"


def inbox_files(inbox: Path) -> list[Path]:
    return sorted(
        path for path in inbox.iterdir() if path.is_file() and not path.name.startswith(".") and not path.name.endswith(IGNORED_SUFFIXES)
    )


def link_target(inbox: Path, path: Path, follow_links: bool) -> Path | None:
    """What registering `path` reads: the file itself, the target of a link (resolved now, so a link
    changed later cannot redirect the read), or None for a link out of the inbox that is not followed."""
    if not path.is_symlink():
        return path
    target = path.resolve()
    return target if follow_links or target.is_relative_to(inbox.resolve()) else None


def signature(path: Path, follow: bool = True) -> list[int]:
    stat = path.stat() if follow else path.lstat()
    return [stat.st_size, stat.st_mtime_ns]


def take(context: dg.SensorEvaluationContext, registry: SampleRegistry, path: Path, target: Path, current: list[int]) -> dict:
    """Register a complete file; its cursor entry says as which sample, or why it was rejected."""
    try:
        sample, created = registry.register(target, sample_name_from_path(path))
    except Exception as error:  # noqa: BLE001 - one bad file must never stop the others; its reason is reported
        context.log.error(f"inbox file {path.name} rejected: {(reason := rejection_reason(error))}")
        return {"signature": current, "state": "rejected", "reason": reason}
    context.log.info(f"inbox file {path.name} is sample {sample.name!r}" + ("" if created else f", registered before from {sample.path}"))
    return {"signature": current, "state": "registered", "sample": sample.name}


def rejection_reason(error: Exception) -> str:
    """The project's own messages never quote a file's content; others' messages might, so only
    their kind is told."""
    if isinstance(error, VirnucproError):
        return str(error)
    if isinstance(error, OSError):
        return f"cannot be read: {error.strerror}"
    return (
        f"unexpected {type(error).__name__} while registering it (not shown here, in case it quotes the file); "
        "`virnucpro-assets add-sample PATH` shows it"
    )


def minimum_interval(seconds: int) -> int:
    """The minimum interval to give Dagster for a tick every `seconds` (every 5 s at most).

    Dagster's sensor and asset daemons come round every 5 s and evaluate a sensor whose last tick
    started at least its minimum interval ago. They come round a moment under 5 s after that tick
    started, so a minimum of exactly 5 s missed every other loop: ticks came every 10 s."""
    return max(1, seconds - 1)


def inbox_sensor(inbox: Path, follow_links: bool, interval: int) -> dg.SensorDefinition:
    """The inbox sensor over `inbox`, evaluated every `interval` seconds."""

    @dg.sensor(
        name="inbox_sensor",
        target=dg.AssetSelection.assets("sample_reads"),
        minimum_interval_seconds=minimum_interval(interval),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Registers each complete FASTA/FASTQ file dropped into the inbox as a sample and starts "
            "its sample_reads run; files still being written wait, bad files are reported once."
        ),
    )
    def evaluate(context: dg.SensorEvaluationContext, store: StoreResource) -> dg.SensorResult:
        return evaluate_inbox(context, store, inbox, follow_links)

    return evaluate


def evaluate_inbox(context: dg.SensorEvaluationContext, store: StoreResource, inbox: Path, follow_links: bool) -> dg.SensorResult:
    inbox.mkdir(parents=True, exist_ok=True)
    known = json.loads(context.cursor) if context.cursor else {}
    files = {}
    new_samples: list[str] = []
    rejections: list[dg.AssetObservation] = []
    for path in inbox_files(inbox):
        target = link_target(inbox, path, follow_links)
        current = signature(path, follow=target is not None)
        before = known.get(path.name)
        if target is None:
            if before is None or before != {"signature": current, "state": "ignored"}:
                context.log.warning(f"inbox file {path.name} is {OUTSIDE_LINK}")
            files[path.name] = {"signature": current, "state": "ignored"}
        elif before is None or before["signature"] != current or before["state"] == "ignored":
            files[path.name] = {"signature": current, "state": "waiting"}
        elif before["state"] != "waiting":
            files[path.name] = before
        else:
            files[path.name] = entry = take(context, store.registry, path, target, current)
            if entry["state"] == "rejected":
                rejections.append(
                    dg.AssetObservation(
                        asset_key=dg.AssetKey("sample_reads"),
                        description=f"inbox file {path.name} rejected",
                        metadata={"rejected_file": dg.MetadataValue.path(str(path)), "reason": entry["reason"]},
                    )
                )
            elif entry["sample"] not in new_samples and not context.instance.has_dynamic_partition(SAMPLES, entry["sample"]):
                new_samples.append(entry["sample"])
    waiting = sorted(name for name, file in files.items() if file["state"] == "waiting")
    skipped = f"no new complete file in {inbox}" + (f"; waiting for {', '.join(waiting)}" if waiting else "")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=name, run_key=name, tags={"virnucpro/source": "inbox"}) for name in new_samples],
        dynamic_partitions_requests=[samples_partitions.build_add_request(new_samples)] if new_samples else [],
        asset_events=rejections,
        cursor=json.dumps(files, sort_keys=True),
        skip_reason=None if new_samples else skipped,
    )


@dg.schedule(
    cron_schedule="0 * * * *",
    # Dagster's implicit job of all assets, which the UI launches materializations with: the one
    # job whose runs may select assets of either partitions definition (sample, sample × shard).
    job_name="__ASSET_JOB",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Hourly, when turned on: re-runs every asset partition whose latest materialization failed, "
        "one run per partition; automation then refreshes what lies downstream."
    ),
)
def retry_failed_partitions(context: dg.ScheduleEvaluationContext):
    failed: dict[str, list[dg.AssetKey]] = defaultdict(list)
    for key, asset in context.repository_def.assets_defs_by_key.items():
        if asset.partitions_def is None:
            continue
        partitions = asset.partitions_def.get_partition_keys(dynamic_partitions_store=context.instance)
        statuses = context.instance.get_status_by_partition(key, partitions, asset.partitions_def) or {}
        for partition, status in statuses.items():
            if status == dg.AssetPartitionStatus.FAILED:
                failed[partition].append(key)
    if not failed:
        return dg.SkipReason("no partition's latest materialization failed")
    return [
        dg.RunRequest(partition_key=partition, asset_selection=keys, tags={"virnucpro/source": "retry"})
        for partition, keys in sorted(failed.items())
    ]
