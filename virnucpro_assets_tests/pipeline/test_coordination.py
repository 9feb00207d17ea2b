"""GPU coordination with a real daemon, queued runs and two simulated devices. (A run worker killed
in its GPU step: test_kill_recovery.py; across hosts: test_distributed.py.)"""

from contextlib import ExitStack
from itertools import combinations

import dagster as dg
import pytest

from virnucpro_assets.demo.reads import write_fasta
from virnucpro_assets.gpu.inventory import Device
from virnucpro_assets.gpu.leases import lease_device
from virnucpro_assets.settings import host_name
from virnucpro_assets_tests.daemon import CHECKOUT, Instance, wait_for

GPU_ASSETS = ("dnabert_embeddings", "esm2_embeddings")
SHARDS = [f"{i:03d}" for i in range(4)]
FAKE_DEVICES = [Device("fake:0", "cpu"), Device("fake:1", "cpu")]


@pytest.mark.long(50)
def test_queued_runs_share_two_devices_one_step_each(tmp_path, demo_models, genomes):
    from virnucpro_assets.demo.reads import cut_reads

    instance = Instance(tmp_path, demo_models, max_concurrent_runs=3, VIRNUCPRO_FAKE_GPUS="2", VIRNUCPRO_SHARDS="4")
    reads = tmp_path / "coord.fasta"
    write_fasta(cut_reads(genomes, count=2000, lengths=(500,), seed=5), reads)
    assert "gpu pool limit 4" in instance.cli("virnucpro-assets", "init")  # two steps admitted per device
    instance.cli("virnucpro-assets", "add-sample", str(reads))
    instance.cli("dagster", "asset", "materialize", "-m", "virnucpro_assets", "--select", "sample_reads", "--partition", "coord")
    # This test launches the shards' runs itself; automation would start them too (from its first tick).
    instance.cli("dagster", "sensor", "stop", "-w", str(CHECKOUT / "workspace.yaml"), "virnucpro_automation")

    with instance.daemon(), instance.dagster() as dagster:
        partitions = ",".join(f"coord|{shard}" for shard in SHARDS)
        # Both devices are held here until three runs' GPU steps are admitted by the pool, more than
        # there are devices (the third waits for a device, not for the pool), and so that two steps
        # are sure to share the devices at once on a machine slow to start runs.
        with ExitStack() as devices:
            for device in FAKE_DEVICES:
                devices.enter_context(lease_device([device], instance.home / "gpu-leases", {"holder": "test"}))
            instance.cli(
                "dagster", "job", "backfill", "-m", "virnucpro_assets", "-j", "shard_pipeline", "--partitions", partitions, "--noprompt"
            )
            wait_for(lambda: dagster.event_log_storage.get_concurrency_info("gpu").active_slot_count == 3, 300, "three GPU steps waiting")
        runs = wait_for(lambda: finished_runs(dagster, 4), 400, "four shard runs")
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}

        steps = gpu_steps(dagster, runs)
        assert sorted((s["asset"], s["partition"]) for s in steps) == sorted((a, f"coord|{s}") for a in GPU_ASSETS for s in SHARDS)
        for first, second in combinations(steps, 2):
            if first["device"] == second["device"]:
                assert not overlap(first, second), f"{first} and {second} ran on one device at once"
        assert any(overlap(a, b) for a, b in combinations(steps, 2)), "never two GPU steps at once"
        assert {s["device"] for s in steps} == {f"{host_name()}/fake-0", f"{host_name()}/fake-1"}
        for run in runs:  # CPU steps take no device
            assert not any(k.startswith("virnucpro/device.") and not k.endswith(GPU_ASSETS) for k in run.tags)
        for asset in (*GPU_ASSETS, "merged_features", "predictions"):
            events = dagster.fetch_materializations(dg.AssetKey(asset), limit=100).records
            assert sorted(e.partition_key for e in events) == [f"coord|{s}" for s in SHARDS]


def finished_runs(instance, count):
    """The shard_pipeline runs, oldest first, once there are `count` and all have finished."""
    records = instance.get_run_records(dg.RunsFilter(job_name="shard_pipeline"))
    runs = [r.dagster_run for r in sorted(records, key=lambda record: record.create_timestamp)]
    return runs if len(runs) >= count and all(r.is_finished for r in runs) else None


def gpu_steps(instance, runs):
    """Each GPU step's partition, device and the time it held that device, from its materialization."""
    steps = []
    for run in runs:
        for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
            entry = record.event_log_entry
            if entry.step_key not in GPU_ASSETS:
                continue
            metadata = entry.dagster_event.event_specific_data.materialization.metadata
            assert metadata["device"].value == run.tags[f"virnucpro/device.{entry.step_key}"]
            steps.append(
                {
                    "asset": entry.step_key,
                    "partition": run.tags["dagster/partition"],
                    "device": metadata["device"].value,
                    "start": metadata["device_held_from"].value,
                    "end": metadata["device_held_until"].value,
                }
            )
    return steps


def overlap(first, second):
    return first["start"] < second["end"] and second["start"] < first["end"]


def test_a_run_records_its_process_when_celery_is_imported_but_runs_no_task():
    """Celery's current_task is a proxy, never None: with celery imported (an instance configured
    for it, or a test before) and no task running, the run's process is still recorded."""
    import json

    import celery  # noqa: F401

    from virnucpro_assets.pipeline.coordination import PROCESS_TAG, record_run_process, this_process

    with dg.DagsterInstance.ephemeral() as instance:
        run = instance.add_run(dg.DagsterRun(job_name="shard_pipeline", run_id="5ca1ab1e-0000-4000-8000-000000000002"))
        record_run_process(instance, run.run_id)
        assert json.loads(instance.get_run_by_id(run.run_id).tags[PROCESS_TAG]) == this_process()
