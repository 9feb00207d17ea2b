"""Past one machine, with real servers: a PostgreSQL instance, a Redis broker, Celery workers on two
simulated hosts (each its own DAGSTER_HOME, host name and simulated GPU) and a CPU worker, one
sample of 4 shards through the daemon; a worker killed mid-step and the broker restarted mid-run.
And the Kubernetes pod of a GPU step, built by dagster-k8s from the project's definitions."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from itertools import combinations
from pathlib import Path

import dagster as dg
import pytest

from benchmarks.common import running_daemon
from benchmarks.servers import postgres_server, redis_server
from virnucpro_assets.demo import GENOMES
from virnucpro_assets.demo.models import build_demo_models
from virnucpro_assets.demo.reads import cut_reads, write_fasta
from virnucpro_assets.gpu.inventory import Device, discover_devices
from virnucpro_assets.gpu.leases import device_holders
from virnucpro_assets.pipeline.executors import GPU_QUEUE
from virnucpro_assets.pipeline.jobs import SHARD_ASSETS
from virnucpro_assets_tests.daemon import BIN, CHECKOUT, freeze_a_step_holding_its_device, wait_for

SHARDS = ["000", "001", "002", "003"]
GPU_ASSETS = ("dnabert_embeddings", "esm2_embeddings")
RESULT_FILES = ("prediction_results.txt", "prediction_results_highestscore.csv", "per_read.tsv")
OUTAGE_S = 5
# Limits for a failing test on a loaded 2-core machine, not speed targets.
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_demo_models(tmp_path_factory.mktemp("models"), GENOMES, 500)


class Host:
    """A simulated host: its own DAGSTER_HOME and host name; the deployment's instance, broker,
    store and models."""

    def __init__(self, root: Path, name: str, common: dict[str, str], workers: tuple[str, ...] = (), **settings: str):
        self.name = name
        self.workers = workers  # the arguments of its `virnucpro-assets worker`
        self.home = root / name
        self.env = {**os.environ, **common, "DAGSTER_HOME": str(self.home), "VIRNUCPRO_HOST_NAME": name, **settings}

    def cli(self, *args: str) -> str:
        done = subprocess.run([str(BIN / args[0]), *args[1:]], env=self.env, cwd=CHECKOUT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{self.name}: {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def start_workers(self) -> subprocess.Popen:
        """`virnucpro-assets worker` in its own process group, its output in workers.log."""
        with open(self.home / "workers.log", "wb") as log:
            return subprocess.Popen(
                [str(BIN / "virnucpro-assets"), "worker", *self.workers], env=self.env, cwd=CHECKOUT,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def holder(self, asset: str) -> dict | None:
        """Who holds this host's simulated GPU for a step of `asset`, if anyone does."""
        device = Device("fake:0", "cpu", "fake-0", self.name)
        [holder] = device_holders([device], self.home / "gpu-leases")
        return holder.details if holder.held and holder.details.get("asset") == asset and "pid" in holder.details else None


@contextlib.contextmanager
def workers_of(*hosts: Host):
    """The hosts' `virnucpro-assets worker` for the block, stopped together: SIGTERM to every
    supervisor (each stops its workers), then each one waited for and its process group killed."""
    processes = [host.start_workers() for host in hosts]
    try:
        yield processes
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(60)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def freeze_a_step(hosts: list[Host], asset: str) -> tuple[Host, dict]:
    """A step of `asset` frozen mid-step on one of the hosts' devices
    (virnucpro_assets_tests.daemon.freeze_a_step_holding_its_device), and that host."""

    def holding() -> dict | None:
        return next(filter(None, (host.holder(asset) for host in hosts)), None)

    holder = freeze_a_step_holding_its_device(holding, TIMEOUT_S, f"a {asset} step holding its device")
    [host] = [host for host in hosts if holder["device"].startswith(f"{host.name}/")]
    return host, holder


def digests(directory: Path, names) -> dict[str, str]:
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in names}


def worker_of_step(instance, run_id: str) -> dict[str, str]:
    """Step key -> the Celery worker that ran it (from its "Executing steps … in celery worker" event)."""
    workers = {}
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records:
        entry = record.event_log_entry
        metadata = entry.dagster_event.engine_event_data.metadata if entry.dagster_event else {}
        if "Celery worker" in metadata:
            workers[entry.step_key] = metadata["Celery worker"].value
    return workers


def describe_runs(instance) -> str:
    return "; ".join(
        f"{run.run_id[:8]} {run.tags.get('dagster/partition')} {run.status.value} {sorted(map(str, run.asset_selection or []))}"
        for run in instance.get_runs()
    )


@pytest.mark.long(100)
def test_two_hosts_share_an_instance_broker_and_store_through_a_killed_worker_and_a_broker_restart(tmp_path, models, genomes):
    reads = tmp_path / "s.fasta"
    # Enough proteins per shard that a GPU step holds its device for tenths of a second (long enough
    # to be seen in its lease file and frozen there), not milliseconds.
    write_fasta(cut_reads(genomes, count=1200, lengths=(500,), seed=5), reads)
    model_settings = {
        "VIRNUCPRO_DNABERT_MODEL": str(models.dnabert),
        "VIRNUCPRO_ESM2_MODEL": str(models.esm2),
        "VIRNUCPRO_CLASSIFIER": str(models.classifier),
        "VIRNUCPRO_SHARDS": str(len(SHARDS)),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(CHECKOUT),
    }
    # The single-host path (sqlite, in-process), for the bytes to compare with.
    single = Host(tmp_path, "single", {**model_settings, "VIRNUCPRO_STORE": str(tmp_path / "single-store")})
    single.cli("virnucpro-assets", "run", str(reads))
    expected = digests(tmp_path / "single-store" / "sample_report" / "sample=s", RESULT_FILES)

    with postgres_server() as postgres, redis_server(tmp_path / "redis") as broker:
        common = {
            **model_settings,
            "VIRNUCPRO_STORE": str(tmp_path / "store"),
            "VIRNUCPRO_EXECUTOR": "celery",
            "VIRNUCPRO_CELERY_BROKER": broker.url,
            "VIRNUCPRO_SENSOR_INTERVAL": "2",
        }
        host_a = Host(tmp_path, "host-a", common, ("--gpus", "all"), VIRNUCPRO_FAKE_GPUS="1")
        host_b = Host(tmp_path, "host-b", common, ("--gpus", "all"), VIRNUCPRO_FAKE_GPUS="1")
        host_c = Host(tmp_path, "host-c", common, ("--gpus", "none", "--cpu", "2"))
        assert "(PostgreSQL): gpu pool limit 2" in host_a.cli("virnucpro-assets", "init", "--postgres", postgres.url, "--gpu-slots", "2")
        # The other hosts' instance is the same file (init on each does the same, at a few seconds of imports each).
        config = (host_a.home / "dagster.yaml").read_text()
        for host in (host_b, host_c):
            host.home.mkdir()
            (host.home / "dagster.yaml").write_text(config)
        (host_a.home / "dagster.yaml").write_text(config.replace("max_concurrent_runs: 32", "max_concurrent_runs: 4"))

        with (
            dg.DagsterInstance.from_config(str(host_a.home)) as instance,
            workers_of(host_a, host_b, host_c),
            running_daemon(host_a.env, CHECKOUT / "workspace.yaml"),
        ):
            inbox = host_a.home / "inbox"
            inbox.mkdir()
            (inbox / "s.fasta").write_bytes(reads.read_bytes())

            # The broker stops for OUTAGE_S while a GPU step is in flight, and the step ends during the
            # outage (its result has nowhere to go until the broker is back): runs wait, none fails.
            host, holder = freeze_a_step([host_a, host_b], "dnabert_embeddings")
            broker.stop()
            stopped = time.monotonic()
            os.kill(holder["pid"], signal.SIGCONT)
            wait_for(lambda: host.holder("dnabert_embeddings") != holder, TIMEOUT_S, "the DNABERT step to release its device")
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
            during = {run.run_id: run.status for run in instance.get_runs()}
            broker.start()
            assert dg.DagsterRunStatus.STARTED in during.values() and dg.DagsterRunStatus.FAILURE not in during.values(), during

            # kill -9 the worker process of an ESM-2 step while it holds its device.
            host, holder = freeze_a_step([host_a, host_b], "esm2_embeddings")
            os.kill(holder["pid"], signal.SIGKILL)
            killed_run_id, killed_partition = holder["run_id"], holder["partition"]

            try:
                wait_for(lambda: instance.get_materialized_partitions(dg.AssetKey("sample_report")) == {"s"}, TIMEOUT_S, "the report")
                wait_for(lambda: all(run.is_finished for run in instance.get_runs()), 120, "every run to finish")
            except AssertionError as timeout:
                raise AssertionError(f"{timeout}; runs: {describe_runs(instance)}") from None

            # The killed step went back to the gpu queue and ran again on a GPU worker, in the same run.
            assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in instance.get_runs()), describe_runs(instance)
            attempts = [
                record.event_log_entry
                for record in instance.get_records_for_run(killed_run_id, of_type=dg.DagsterEventType.STEP_START).records
                if record.event_log_entry.step_key == "esm2_embeddings"
            ]
            assert len(attempts) == 2, attempts
            assert instance.get_run_by_id(killed_run_id).tags["dagster/partition"] == killed_partition
            assert "Worker exited prematurely: signal 9" in (host.home / "workers.log").read_text()

            # Nothing lost, nothing twice: every partition materialized once, the killed step's too.
            counts = Counter(
                (asset, record.partition_key)
                for asset in (*SHARD_ASSETS, "sample_report")
                for record in instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
            )
            assert counts == Counter({**{(a, f"s|{s}"): 1 for a in SHARD_ASSETS for s in SHARDS}, ("sample_report", "s"): 1}), counts

            # GPU steps ran on both hosts' devices, never two at once on one; other steps on the CPU worker.
            steps = [
                record.asset_materialization.metadata
                for asset in GPU_ASSETS
                for record in instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
            ]
            assert {step["device"].value for step in steps} == {"host-a/fake-0", "host-b/fake-0"}
            for first, second in combinations(steps, 2):
                if first["device"] == second["device"]:
                    held = sorted([(first["device_held_from"].value, first["device_held_until"].value),
                                   (second["device_held_from"].value, second["device_held_until"].value)])  # fmt: skip
                    assert held[0][1] <= held[1][0], f"two steps held {first['device'].value} at once: {held}"
            for run in instance.get_runs():
                for step, worker in worker_of_step(instance, run.run_id).items():
                    queue = GPU_QUEUE if step in GPU_ASSETS else "cpu"
                    assert worker.startswith(f"{queue}."), (step, worker)
                    assert worker.startswith("cpu.host-c") or step in GPU_ASSETS, (step, worker)

            # The same bytes as the single-host run; no unfinished write left behind.
            assert digests(tmp_path / "store" / "sample_report" / "sample=s", RESULT_FILES) == expected
            assert not [path for path in (tmp_path / "store").rglob(".*.tmp")]
            assert not any(h.holder("esm2_embeddings") or h.holder("dnabert_embeddings") for h in (host_a, host_b))
        # Every worker process stopped with its supervisor.
        for host in (host_a, host_b, host_c):
            assert "started worker" in (host.home / "workers.log").read_text()


def test_a_gpu_step_pod_asks_for_one_gpu_on_a_gpu_node(monkeypatch):
    """dagster-k8s builds the Kubernetes Job of the ESM-2 step from its tags in the project's own
    definitions, as the k8s_job_executor does."""
    from dagster._core.execution.api import create_execution_plan
    from dagster_k8s import DagsterK8sJobConfig, construct_dagster_k8s_job
    from dagster_k8s.job import get_user_defined_k8s_config

    from virnucpro_assets.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    plan = create_execution_plan(job)
    pods = {}
    for key in ("esm2_embeddings", "translated_proteins"):
        step = plan.get_step_by_key(key)
        config = DagsterK8sJobConfig(
            job_image="virnucpro-assets:latest", dagster_home="/opt/dagster/dagster_home", instance_config_map="dagster-instance"
        )
        k8s_job = construct_dagster_k8s_job(
            config, ["dagster", "api", "execute_step"], f"step-{key.replace('_', '-')}", get_user_defined_k8s_config(step.tags)
        )
        pods[key] = k8s_job.spec.template.spec
    [container] = pods["esm2_embeddings"].containers
    assert container.resources.limits == {"nvidia.com/gpu": "1"}
    assert pods["esm2_embeddings"].node_selector == {"nvidia.com/gpu.present": "true"}
    [cpu_container] = pods["translated_proteins"].containers
    assert not (cpu_container.resources and cpu_container.resources.limits), cpu_container.resources


def test_device_identity_is_host_and_uuid_and_pinning_keeps_it(monkeypatch):
    monkeypatch.setenv("VIRNUCPRO_FAKE_GPUS", "3")
    monkeypatch.setenv("VIRNUCPRO_HOST_NAME", "gpu-host-7")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [d.identity for d in discover_devices()] == ["gpu-host-7/fake-0", "gpu-host-7/fake-1", "gpu-host-7/fake-2"]
    # A worker pinned to the third device sees it alone, under its own identity (CUDA renumbers, the UUID stays).
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "fake-2")
    [device] = discover_devices()
    assert device.identity == "gpu-host-7/fake-2"


def test_worker_plan_pins_one_worker_per_gpu(monkeypatch, tmp_path):
    from virnucpro_assets.deployment.workers import plan_workers, select_devices, write_worker_config
    from virnucpro_assets.errors import VirnucproError
    from virnucpro_assets.settings import Settings

    monkeypatch.setenv("VIRNUCPRO_FAKE_GPUS", "2")
    monkeypatch.setenv("VIRNUCPRO_HOST_NAME", "h1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    workers = plan_workers(select_devices("all"), cpu=4)
    assert [(w.name, w.queue, w.concurrency, w.env.get("CUDA_VISIBLE_DEVICES")) for w in workers] == [
        ("gpu.fake-0.h1", "gpu", 1, "fake-0"), ("gpu.fake-1.h1", "gpu", 1, "fake-1"), ("cpu.h1", "cpu", 4, None),
    ]  # fmt: skip
    assert [d.uuid for d in select_devices("1")] == ["fake-1"]
    with pytest.raises(VirnucproError, match="device numbers from 0 to 1"):
        select_devices("2")
    with pytest.raises(VirnucproError, match="VIRNUCPRO_EXECUTOR=celery"):
        write_worker_config(tmp_path, Settings.from_environment())
    monkeypatch.setenv("VIRNUCPRO_EXECUTOR", "celery")
    monkeypatch.setenv("VIRNUCPRO_CELERY_BROKER", "redis://127.0.0.1:1/0")
    import yaml

    written = yaml.safe_load(write_worker_config(tmp_path, Settings.from_environment()).read_text())["execution"]["config"]
    assert written["broker"] == written["backend"] == "redis://127.0.0.1:1/0"
    assert written["config_source"]["task_default_queue"] == "cpu"

    # dagster-celery and the `celery` it starts run on this interpreter as modules, with no console
    # script needed on PATH, so that packages on a PYTHONPATH (pip install --target) start workers too.
    import celery

    from virnucpro_assets.deployment.workers import celery_launcher, worker_command

    assert worker_command(workers[0], tmp_path / "celery.yaml")[:3] == [sys.executable, "-m", "dagster_celery.cli"]
    launched = subprocess.run(
        [str(celery_launcher(tmp_path) / "celery"), "--version"], env={"PATH": str(tmp_path / "empty")}, capture_output=True, text=True
    )
    assert launched.returncode == 0 and launched.stdout.startswith(celery.__version__), launched


def test_postgres_profile_is_written_once_and_never_over_a_hand_edited_file(tmp_path):
    from virnucpro_assets.deployment.instance import write_instance_config
    from virnucpro_assets.errors import VirnucproError

    assert write_instance_config(tmp_path)
    assert write_instance_config(tmp_path, "postgresql://u:secret@db:5432/dagster")
    text = (tmp_path / "dagster.yaml").read_text()
    assert (
        'postgres_url: "postgresql+psycopg2://u:secret@db:5432/dagster"' in text
        and oct((tmp_path / "dagster.yaml").stat().st_mode & 0o777) == "0o600"
    )
    with pytest.raises(VirnucproError, match=r"u:\*\*\*@db"):
        write_instance_config(tmp_path / "other", "mysql://u:secret@db/dagster")
    (tmp_path / "dagster.yaml").write_text("storage: {}\n")
    with pytest.raises(VirnucproError, match="was edited"):
        write_instance_config(tmp_path, "postgresql://u@db2/dagster")
