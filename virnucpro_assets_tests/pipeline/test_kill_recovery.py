"""Killed run workers, with the daemon running and without it: nothing stays stuck silently."""

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import dagster as dg
import numpy as np
import pytest

from virnucpro_assets.definitions import defs
from virnucpro_assets.demo.reads import cut_reads, write_fasta
from virnucpro_assets.gpu.inventory import Device
from virnucpro_assets.gpu.leases import device_holders, lease_device
from virnucpro_assets.pipeline.coordination import (
    PROCESS_TAG,
    release_abandoned_runs,
    this_process,
)
from virnucpro_assets.pipeline.jobs import SHARD_ASSETS
from virnucpro_assets_tests.daemon import BIN, CHECKOUT, Instance, freeze_a_step_holding_its_device, wait_for

FAKE_DEVICES = [Device("fake:0", "cpu"), Device("fake:1", "cpu")]
# Limits for a failing test on a loaded 2-core machine, not speed targets.
PIPELINE_TIMEOUT_S = 900


def esm2_holder(home) -> dict | None:
    """The lease details of an ESM-2 step holding a device, if one does."""
    for holder in device_holders(FAKE_DEVICES, home / "gpu-leases"):
        if holder.held and holder.details.get("asset") == "esm2_embeddings" and "pid" in holder.details:
            return holder.details
    return None


def materialization_counts(instance, assets):
    counts = Counter()
    for asset in assets:
        for record in instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records:
            counts[(asset, record.partition_key)] += 1
    return counts


def describe_runs(instance) -> str:
    return "; ".join(
        f"{run.run_id[:8]} {run.tags.get('dagster/partition')} {run.status.value} "
        f"{sorted(k.to_user_string() for k in run.asset_selection or [])}"
        for run in instance.get_runs()
    )


@pytest.mark.long(40)
def test_a_run_worker_killed_in_its_gpu_step_is_retried_and_the_sample_reaches_its_report(tmp_path, demo_models, genomes):
    instance = Instance(
        tmp_path, demo_models, max_concurrent_runs=2, VIRNUCPRO_FAKE_GPUS="2", VIRNUCPRO_SHARDS="2", VIRNUCPRO_SENSOR_INTERVAL="1"
    )
    reads = tmp_path / "s.fasta"
    # Enough proteins that an ESM-2 step holds its device for tenths of a second (long enough to be
    # seen in its lease file and frozen there), not milliseconds.
    write_fasta(cut_reads(genomes, count=600, lengths=(500,), seed=5), reads)
    instance.cli("virnucpro-assets", "init")
    instance.cli("virnucpro-assets", "add-sample", str(reads))
    # sample_reads is materialized before the daemon's first automation tick: that tick must start
    # the shards' chains all the same.
    instance.cli("dagster", "asset", "materialize", "-m", "virnucpro_assets", "--select", "sample_reads", "--partition", "s")

    with instance.dagster() as dagster, instance.daemon():
        holder = freeze_a_step_holding_its_device(lambda: esm2_holder(instance.home), PIPELINE_TIMEOUT_S, "an ESM-2 step holding a device")
        killed_partition, killed_run_id = holder["partition"], holder["run_id"]
        os.kill(holder["pid"], signal.SIGKILL)

        report = dg.AssetKey("sample_report")
        try:
            wait_for(lambda: dagster.get_materialized_partitions(report) == {"s"}, PIPELINE_TIMEOUT_S, "the sample's report")
            wait_for(lambda: all(run.is_finished for run in dagster.get_runs()), 120, "every run to finish")
        except AssertionError as timeout:
            raise AssertionError(f"{timeout}; runs: {describe_runs(dagster)}") from None

        killed = dagster.get_run_by_id(killed_run_id)
        assert killed.status == dg.DagsterRunStatus.FAILURE
        [retry] = [run for run in dagster.get_runs() if run.parent_run_id == killed_run_id]
        assert retry.status == dg.DagsterRunStatus.SUCCESS, describe_runs(dagster)
        assert retry.tags["dagster/partition"] == killed_partition
        # The retry redid the killed step and what came after it, nothing that had finished.
        finished = {
            record.event_log_entry.dagster_event.step_key
            for record in dagster.get_records_for_run(killed_run_id, of_type=dg.DagsterEventType.STEP_SUCCESS).records
        }
        assert "esm2_embeddings" in retry.step_keys_to_execute and "translated_proteins" in finished
        assert not finished & set(retry.step_keys_to_execute), (finished, retry.step_keys_to_execute)

        # Nothing else was touched: every partition was materialized once, the killed step's too
        # (the kill left no materialization of it).
        shards = [f"s|{shard}" for shard in ("000", "001")]
        counts = materialization_counts(dagster, (*SHARD_ASSETS, "sample_report"))
        assert counts == Counter({**{(a, p): 1 for a in SHARD_ASSETS for p in shards}, ("sample_report", "s"): 1}), counts

        # Every check's latest evaluation passed, those the kill stopped before they ran included.
        latest = {}
        for run in sorted(dagster.get_runs(), key=lambda run: dagster.get_run_record_by_id(run.run_id).create_timestamp):
            for record in dagster.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records:
                evaluation = record.event_log_entry.dagster_event.event_specific_data
                latest[(evaluation.asset_key.to_user_string(), evaluation.check_name, evaluation.partition)] = evaluation.passed
        checks = [(key.asset_key.to_user_string(), key.name) for checks_def in defs.asset_checks for key in checks_def.check_keys]
        wanted = {(asset, name, shard) for asset, name in checks if asset in SHARD_ASSETS for shard in shards}
        wanted |= {(asset, name, "s") for asset, name in checks if asset == "sample_report"}
        assert set(latest) == wanted and all(latest.values()), latest
        assert not dagster.event_log_storage.get_concurrency_run_ids()
        assert not any(h.held for h in device_holders(FAKE_DEVICES, instance.home / "gpu-leases"))
        # The killed step's temporary file was removed when its partition was written again.
        assert not [path.name for path in instance.store.rglob(".*") if path.suffix in (".tmp", ".old")], "temporaries left in the store"


def started_run(instance, process: dict | None):
    from dagster._core.test_utils import create_run_for_test

    run = create_run_for_test(instance, status=dg.DagsterRunStatus.STARTED)
    if process is not None:
        instance.add_run_tags(run.run_id, {PROCESS_TAG: json.dumps(process)})
    return run.run_id


def exited_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_runs_of_this_host_whose_process_is_gone_are_failed():
    with dg.instance_for_test() as instance:
        here = this_process()
        dead = started_run(instance, {**here, "pid": exited_pid()})
        alive = started_run(instance, here)
        reused = started_run(instance, {**here, "start": here["start"] - 1})  # this pid, another process
        rebooted = started_run(instance, {**here, "boot": "another boot"})
        elsewhere = started_run(instance, {**here, "host": "another-host", "pid": exited_pid()})
        unrecorded = started_run(instance, None)

        assert sorted(release_abandoned_runs(instance).failed) == sorted([dead, reused, rebooted])
        status = {run_id: instance.get_run_by_id(run_id).status for run_id in (dead, alive, reused, rebooted, elsewhere, unrecorded)}
        assert status == {
            dead: dg.DagsterRunStatus.FAILURE,
            reused: dg.DagsterRunStatus.FAILURE,
            rebooted: dg.DagsterRunStatus.FAILURE,
            alive: dg.DagsterRunStatus.STARTED,
            elsewhere: dg.DagsterRunStatus.STARTED,
            unrecorded: dg.DagsterRunStatus.STARTED,
        }
        [failure] = instance.get_records_for_run(dead, of_type=dg.DagsterEventType.RUN_FAILURE).records
        assert (
            f"pid {json.loads(instance.get_run_by_id(dead).tags[PROCESS_TAG])['pid']} on host {here['host']}"
            in failure.event_log_entry.message
        )
        assert not release_abandoned_runs(instance)


def big_fasta(path, reads: int):
    """`reads` random 150-bp reads: enough that sample_reads runs for seconds."""
    rng = np.random.default_rng(3)
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, size=(reads, 150))]
    with open(path, "w") as handle:
        handle.writelines(f">r{i}\n{row.tobytes().decode()}\n" for i, row in enumerate(bases))


def step_started(instance, step_key):
    """The run in which step `step_key` has started, once one has."""
    for run in instance.get_runs():
        if instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START).records:
            steps = {
                r.event_log_entry.step_key for r in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START).records
            }
            if step_key in steps:
                return run
    return None


def materialize_in_background(instance, asset, partition, log):
    command = [str(BIN / "dagster"), "asset", "materialize", "-m", "virnucpro_assets", "--select", asset, "--partition", partition]
    return subprocess.Popen(command, env=instance.env, cwd=CHECKOUT, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.long(12)
def test_an_in_process_run_killed_in_a_cpu_step_is_failed_by_the_next_cli_command(tmp_path, demo_models):
    instance = Instance(tmp_path, demo_models)
    reads = tmp_path / "big.fasta"
    big_fasta(reads, 200_000)
    instance.cli("virnucpro-assets", "init")
    instance.cli("virnucpro-assets", "add-sample", str(reads))
    with instance.dagster() as dagster, open(tmp_path / "run.log", "wb") as log:
        process = materialize_in_background(instance, "sample_reads", "big", log)
        run = wait_for(lambda: process.poll() is not None or step_started(dagster, "sample_reads"), 300, "sample_reads to start", poll=0.05)
        assert process.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert dagster.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

        instance.cli("virnucpro-assets", "devices")
        assert dagster.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        [failure] = dagster.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
        assert f"pid {process.pid}" in failure.event_log_entry.message
        key = dg.AssetKey("sample_reads")
        status = dagster.get_status_by_partition(key, ["big"], defs.get_assets_def(key).partitions_def)
        assert status == {"big": dg.AssetPartitionStatus.FAILED}


@pytest.mark.long(25)
def test_a_gpu_step_waiting_on_the_pool_frees_the_slot_a_killed_run_kept(tmp_path, demo_models, genome_reads):
    instance = Instance(tmp_path, demo_models, VIRNUCPRO_FAKE_GPUS="1", VIRNUCPRO_SHARDS="1")
    reads = tmp_path / "p.fasta"
    write_fasta(genome_reads[:20], reads)
    assert "gpu pool limit 1" in instance.cli("virnucpro-assets", "init", "--gpu-slots", "1")
    instance.cli("virnucpro-assets", "add-sample", str(reads))
    for asset, partition in (("sample_reads", "p"), ("translated_proteins", "p|000"), ("dnabert_tokens", "p|000")):
        instance.cli("dagster", "asset", "materialize", "-m", "virnucpro_assets", "--select", asset, "--partition", partition)

    with (
        instance.dagster() as dagster,
        open(tmp_path / "killed.log", "wb") as killed_log,
        open(tmp_path / "waiting.log", "wb") as waiting_log,
    ):

        def pool():
            return dagster.event_log_storage.get_concurrency_info("gpu")

        # The test holds the only device, so the first run's GPU step claims the pool's one slot and
        # then waits inside the step for the device, where it is killed.
        with lease_device([Device("fake:0", "cpu")], instance.home / "gpu-leases", {"holder": "test"}):
            killed = materialize_in_background(instance, "dnabert_embeddings", "p|000", killed_log)
            wait_for(lambda: pool().active_slot_count == 1, 300, "the first GPU step to claim the pool's slot")
            waiting = materialize_in_background(instance, "esm2_embeddings", "p|000", waiting_log)
            wait_for(
                lambda: any(step.assigned_timestamp is None for step in pool().pending_steps),
                300,
                "the second GPU step to wait on the pool",
            )
            [killed_run] = pool().active_run_ids
            os.kill(killed.pid, signal.SIGKILL)
            killed.wait()
        try:
            assert waiting.wait(300) == 0, (tmp_path / "waiting.log").read_text()[-3000:]
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
        assert dagster.get_run_by_id(killed_run).status == dg.DagsterRunStatus.FAILURE
        assert dagster.get_materialized_partitions(dg.AssetKey("esm2_embeddings")) == {"p|000"}
        assert not dagster.event_log_storage.get_concurrency_run_ids()
