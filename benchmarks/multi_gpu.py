"""One sample over every shard and every GPU, through the real coordination path: a daemon, queued
runs (one `shard_pipeline` run per shard), the gpu pool and device leases; then the same sample on
one device of the same machine, for scaling and identical outputs; and, if asked, the same again
with every step a Celery task, for the Celery path against the single-host one.

    python -m benchmarks.multi_gpu [--reads 200000] [--read-length 150] [--shards 8] [--devices all,1]
                                   [--executors in_process,celery] [--tiny] [--fake-devices N] [--against saved.jsonl]

`--devices` lists the device counts to run (all = every device the machine has; 1 = the first
only). `--fake-devices N` simulates N CPU-backed devices (a CPU run of the same script); `--tiny`
uses the demo's tiny models, otherwise full-size random-weight models are written in the real
formats. Per configuration (`devices`: the devices its GPU steps used; `devices_configured`: those
it had), JSON lines: the embedding phase (from the first GPU step leasing a device to the last
releasing one), each device's busy fraction over it and tokens/s, the total, whether any device
ever ran two GPU steps at once, the wall time from registering the sample to its report, and per
GPU asset the model load's share of its steps; then, per executor, the scaling of the phase of the
configuration with the most devices against each other one and whether their outputs are
byte-identical (sha256 of the original's two result files).

`--executors` lists the executors each device count runs with: `in_process` (the single-host path,
default: each shard run's steps in its run's process) and `celery` (VIRNUCPRO_EXECUTOR=celery: a
Redis broker started here, benchmarks/servers.py, and this machine's workers, `virnucpro-assets
worker --gpus all --cpu <cores>`: one GPU worker per device, whose one long-lived process runs every
GPU step of that device, and a CPU worker taking as many steps at once as the machine has cores;
the daemon, the runs and the workers share the sqlite instance, as they share one host). The
workers start, and are ready, before the clock starts: in a deployment they are running before a
sample arrives. For each device count run both ways a line compares them: throughput (reads per
second from registering the sample to its report) and that of the embedding phase, Celery over
in-process, and whether the result files are byte-identical.

`--against` adds the configurations of an earlier run's saved output to the comparisons, so that
the configurations of one sample can run in separate calls when together they outlast a call's time
limit.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks import timeline
from benchmarks.common import emit, genome_files, patient_sqlite, running_daemon
from benchmarks.pipeline import write_models
from benchmarks.servers import redis_server, running_workers, wait_for_workers
from virnucpro_assets.demo.reads import cut_reads, load_genomes, write_fasta

CHECKOUT = Path(__file__).resolve().parents[1]
# Modules rather than console scripts, so that the benchmark also runs from a PYTHONPATH (the device).
COMMANDS = {"virnucpro-assets": "virnucpro_assets.cli", "dagster": "dagster"}
GPU_ASSETS = ("dnabert_embeddings", "esm2_embeddings")
SAMPLE = "bench"
EXECUTORS = ("in_process", "celery")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=200_000)
    parser.add_argument("--read-length", type=int, default=150)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--devices", default="all,1", help="device counts to run, in order: 'all' or a number")
    parser.add_argument("--executors", default="in_process", help="executors to run each device count with, in order: in_process, celery")
    parser.add_argument(
        "--launch", choices=("automation", "backfill"), default="automation",
        help="automation: materialize sample_reads and let the daemon's automation do the rest, as deployed; "
        "backfill: a shard_pipeline backfill, then sample_report from the CLI",
    )  # fmt: skip
    parser.add_argument("--tiny", action="store_true", help="the demo's tiny models")
    parser.add_argument("--fake-devices", type=int, help="simulate this many CPU-backed devices")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--genomes", type=Path, help="a folder like ../shared/data/genomes (default: benchmarks.common's)")
    parser.add_argument(
        "--against",
        type=Path,
        action="append",
        default=[],
        help="an earlier run's saved output (same arguments): compare with its configurations too",
    )
    args = parser.parse_args()
    executors = args.executors.split(",")
    if unknown := set(executors) - set(EXECUTORS):
        parser.error(f"--executors: {', '.join(sorted(unknown))} is not one of {', '.join(EXECUTORS)}")
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        genomes = load_genomes(sorted(args.genomes.glob("*/*.fna.gz")) if args.genomes else genome_files())
        models = write_models(workdir / "models", genomes, args.tiny)
        reads = workdir / f"{SAMPLE}.fasta"
        write_fasta(cut_reads(genomes, count=args.reads, lengths=(args.read_length,), seed=6), reads)
        os.environ.update(
            {
                "VIRNUCPRO_SHARDS": str(args.shards),
                "VIRNUCPRO_DNABERT_MODEL": str(models["dnabert"]),
                "VIRNUCPRO_ESM2_MODEL": str(models["esm2"]),
                "VIRNUCPRO_CLASSIFIER": str(models["classifier"]),
            }
        )
        results = [
            run_configuration(
                workdir / f"{executor}-devices-{count}", reads, executor, args.launch, *device_settings(count, args.fake_devices)
            )
            for executor in executors
            for count in args.devices.split(",")
        ]
    results += [
        line for saved in args.against for line in map(json.loads, saved.read_text().splitlines()) if line.get("benchmark") == "multi_gpu"
    ]
    # Lines saved before there was a choice of executor are the single-host path's.
    executor_of = lambda line: line.get("executor", "in_process")  # noqa: E731
    for executor in dict.fromkeys(map(executor_of, results)):
        most, *others = sorted((line for line in results if executor_of(line) == executor), key=lambda line: -line["devices"])
        for other in others:
            emit(
                benchmark="multi_gpu_scaling",
                executor=executor,
                devices=most["devices"],
                against_devices=other["devices"],
                phase_speedup=round(other["embedding_phase_s"] / most["embedding_phase_s"], 2),
                ideal=round(most["devices"] / other["devices"], 2),
                outputs_identical=most["outputs_sha256"] == other["outputs_sha256"],
            )
    # Paired by the devices a configuration had, not those its steps happened to use (lines saved before: the same).
    configured = lambda line: line.get("devices_configured", line["devices"])  # noqa: E731
    for single in (line for line in results if executor_of(line) == "in_process"):
        for celery in (line for line in results if executor_of(line) == "celery" and configured(line) == configured(single)):
            emit(
                benchmark="multi_gpu_celery",
                devices=configured(single),
                throughput_celery_over_in_process=round(single["ingest_to_report_s"] / celery["ingest_to_report_s"], 3),
                embedding_phase_celery_over_in_process=round(single["embedding_phase_s"] / celery["embedding_phase_s"], 3),
                outputs_identical=single["outputs_sha256"] == celery["outputs_sha256"],
            )


def device_settings(count: str, fake: int | None) -> tuple[dict[str, str], int]:
    """The settings that give a configuration `count` devices, and how many devices that is."""
    if fake:
        devices = fake if count == "all" else int(count)
        return {"VIRNUCPRO_FAKE_GPUS": str(devices)}, devices
    import torch

    if count == "all":
        return {}, torch.cuda.device_count()
    devices = min(int(count), torch.cuda.device_count())
    return {"VIRNUCPRO_GPUS": ",".join(str(i) for i in range(devices))}, devices


def run_configuration(root: Path, reads: Path, executor: str, launch: str, devices_env: dict[str, str], devices: int) -> dict:
    home = root / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(CHECKOUT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, **devices_env, "DAGSTER_HOME": str(home), "VIRNUCPRO_STORE": str(root / "store"), "VIRNUCPRO_EXECUTOR": executor}

    def cli(*command: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", COMMANDS[command[0]], *command[1:]], env=env, cwd=CHECKOUT, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")

    with contextlib.ExitStack() as servers:
        workers_ready_s = None
        if executor == "celery":
            env["VIRNUCPRO_CELERY_BROKER"] = servers.enter_context(redis_server(root / "redis")).url
        cli("virnucpro-assets", "init")
        if executor == "celery":
            booting = time.time()
            log = root / "workers.log"
            supervisor = servers.enter_context(running_workers(env, log, "--gpus", "all", "--cpu", str(os.cpu_count())))
            wait_for_workers([log], devices + 1, supervisor)
            workers_ready_s = round(time.time() - booting, 1)
        shards = [f"{i:03d}" for i in range(int(os.environ["VIRNUCPRO_SHARDS"]))]
        import dagster as dg

        patient_sqlite()
        with contextlib.ExitStack() as daemon:
            instance = daemon.enter_context(dg.DagsterInstance.from_config(str(home)))
            if launch == "automation":  # as deployed: the daemon runs, its sensors ticking, before a sample arrives
                daemon.enter_context(running_daemon(env, CHECKOUT / "workspace.yaml"))
                while not timeline.automation_ticks(instance, 0)["automation_ticks"]:
                    time.sleep(0.5)
            started = time.time()
            cli("virnucpro-assets", "add-sample", str(reads), "--name", SAMPLE)
            cli("dagster", "asset", "materialize", "-m", "virnucpro_assets", "--select", "sample_reads", "--partition", SAMPLE)
            if launch == "backfill":
                daemon.enter_context(running_daemon(env, CHECKOUT / "workspace.yaml"))
                cli("dagster", "job", "backfill", "-m", "virnucpro_assets", "-j", "shard_pipeline", "--noprompt",
                    "--partitions", ",".join(f"{SAMPLE}|{s}" for s in shards))  # fmt: skip
            while True:
                runs = shard_runs(instance)
                if len(runs) == len(shards) and all(r.is_finished for r in runs):
                    break
                time.sleep(1)
            failed = [r.tags["dagster/partition"] for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
            if failed:
                raise RuntimeError(f"shard runs failed: {failed}")
            if launch == "automation":
                while not instance.fetch_materializations(dg.AssetKey("sample_report"), limit=1).records:
                    if any(r.dagster_run.status == dg.DagsterRunStatus.FAILURE for r in instance.get_run_records()):
                        raise RuntimeError(f"a run failed: see the instance at {home}")
                    time.sleep(1)
            steps = gpu_steps(instance, runs)
            workers = celery_workers(instance, runs)
            if launch == "backfill":
                cli("dagster", "asset", "materialize", "-m", "virnucpro_assets", "--select", "sample_report", "--partition", SAMPLE)
            phases = timeline.phases(instance, started, steps, runs)
            ticks = timeline.automation_ticks(instance, started)
        ingest_to_report = phases["total_s"]
        emit(benchmark="multi_gpu_timeline", executor=executor, launch=launch, devices_configured=devices, **phases, **ticks)

    start, end = min(s["start"] for s in steps), max(s["end"] for s in steps)
    by_device = defaultdict(list)
    for step in steps:
        by_device[step["device"]].append(step)
    exclusive = all(
        a["end"] <= b["start"]
        for device_steps in by_device.values()
        for a, b in zip(sorted(device_steps, key=lambda s: s["start"]), sorted(device_steps, key=lambda s: s["start"])[1:])
    )
    for device, device_steps in sorted(by_device.items()):
        emit(
            benchmark="multi_gpu_device",
            executor=executor,
            devices=len(by_device),
            device=device,
            gpu_steps=len(device_steps),
            busy_fraction=round(sum(s["end"] - s["start"] for s in device_steps) / (end - start), 3),
            tokens_per_s=round(sum(s["tokens"] for s in device_steps) / sum(s["embed_s"] for s in device_steps)),
        )
    for asset in GPU_ASSETS:
        asset_steps = [step for step in steps if step["asset"] == asset]
        load, embed = (sum(step[key] for step in asset_steps) for key in ("model_load_s", "embed_s"))
        emit(
            benchmark="multi_gpu_asset",
            executor=executor,
            devices=len(by_device),
            asset=asset,
            steps=len(asset_steps),
            model_load_s_per_step=round(load / len(asset_steps), 2),
            embed_s_per_step=round(embed / len(asset_steps), 2),
            model_load_share=round(load / (load + embed), 3),
            tokens_per_s_while_embedding=round(sum(step["tokens"] for step in asset_steps) / embed),
        )
    report = root / "store" / "sample_report" / f"sample={SAMPLE}"
    outputs = hashlib.sha256()
    for name in ("prediction_results.txt", "prediction_results_highestscore.csv"):
        outputs.update((report / name).read_bytes())
    return emit(
        benchmark="multi_gpu",
        executor=executor,
        launch=launch,
        devices=len(by_device),
        devices_configured=devices,
        shards=len(shards),
        embedding_phase_s=round(end - start, 1),
        ingest_to_report_s=round(ingest_to_report, 1),
        workers_ready_s=workers_ready_s,
        # The Celery workers that ran the shard runs' GPU steps and their other steps (none in-process).
        gpu_step_workers=sorted(workers["gpu"]),
        cpu_step_workers=sorted(workers["cpu"]),
        tokens=sum(s["tokens"] for s in steps),
        tokens_per_s_total=round(sum(s["tokens"] for s in steps) / (end - start)),
        one_gpu_step_per_device_at_a_time=exclusive,
        outputs_sha256=outputs.hexdigest(),
    )


def celery_workers(instance, runs) -> dict[str, set[str]]:
    """The Celery workers that ran the runs' GPU steps ("gpu") and other steps ("cpu"), from each
    step's "Executing steps … in celery worker" engine event."""
    import dagster as dg

    workers = {"gpu": set(), "cpu": set()}
    for run in runs:
        for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records:
            entry = record.event_log_entry
            metadata = entry.dagster_event.engine_event_data.metadata if entry.dagster_event else {}
            if "Celery worker" in metadata:
                workers["gpu" if entry.step_key in GPU_ASSETS else "cpu"].add(metadata["Celery worker"].value)
    return workers


def shard_runs(instance) -> list:
    """The runs of the sample's shards (a backfill's shard_pipeline runs, or automation's asset runs)."""
    return [r.dagster_run for r in instance.get_run_records() if "|" in r.dagster_run.tags.get("dagster/partition", "")]


def gpu_steps(instance, runs) -> list[dict]:
    """Each GPU step's asset, device, the time it held it, its tokens, model load and embedding time
    (materialization metadata)."""
    import dagster as dg

    steps = []
    for run in runs:
        for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
            if record.event_log_entry.step_key not in GPU_ASSETS:
                continue
            metadata = record.event_log_entry.dagster_event.event_specific_data.materialization.metadata
            steps.append(
                {
                    "asset": record.event_log_entry.step_key,
                    "device": metadata["device"].value,
                    "start": metadata["device_held_from"].value,
                    "end": metadata["device_held_until"].value,
                    "tokens": metadata["tokens"].value,
                    "embed_s": metadata["embed_s"].value,
                    "model_load_s": metadata["model_load_s"].value,
                }
            )
    return steps


if __name__ == "__main__":
    main()
