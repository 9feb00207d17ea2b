"""One sample over every shard and every GPU, through the real coordination path: a daemon, queued
runs (one `shard_pipeline` run per shard), the gpu pool and device leases; then the same sample on
one device of the same machine, for scaling and identical outputs.

    python -m benchmarks.multi_gpu [--reads 200000] [--read-length 150] [--shards 8]
                                   [--devices all,1] [--tiny] [--fake-devices N] [--against saved.jsonl]

`--devices` lists the device counts to run (all = every device the machine has; 1 = the first
only). `--fake-devices N` simulates N CPU-backed devices (a CPU run of the same script); `--tiny`
uses the demo's tiny models, otherwise full-size random-weight models are written in the real
formats. Per configuration, JSON lines: the embedding phase (from the first GPU step leasing a
device to the last releasing one), each device's busy fraction over it and tokens/s, the total,
whether any device ever ran two GPU steps at once, the wall time from registering the sample to its
report, and per GPU asset the model load's share of its steps (each step a process of its own, as
deployed); then the scaling of the phase against the first configuration and whether the two
configurations' outputs are byte-identical (sha256 of the original's two result files).
`--against` adds the configurations of an earlier run's saved output to the comparison, so that the
configurations of one sample can run in separate calls when together they outlast a call's time limit.
"""

from __future__ import annotations

import argparse
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

from benchmarks.common import emit, genome_files, running_daemon
from benchmarks.pipeline import write_models
from virnucpro_assets.demo.reads import cut_reads, load_genomes, write_fasta

CHECKOUT = Path(__file__).resolve().parents[1]
# Modules rather than console scripts, so that the benchmark also runs from a PYTHONPATH (the device).
COMMANDS = {"virnucpro-assets": "virnucpro_assets.cli", "dagster": "dagster"}
GPU_ASSETS = ("dnabert_embeddings", "esm2_embeddings")
SAMPLE = "bench"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=200_000)
    parser.add_argument("--read-length", type=int, default=150)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--devices", default="all,1", help="device counts to run, in order: 'all' or a number")
    parser.add_argument("--tiny", action="store_true", help="the demo's tiny models")
    parser.add_argument("--fake-devices", type=int, help="simulate this many CPU-backed devices")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--genomes", type=Path, help="a folder like ../shared/data/genomes (default: benchmarks.common's)")
    parser.add_argument("--against", type=Path, action="append", default=[],
                        help="an earlier run's saved output (same arguments): compare with its configurations too")
    args = parser.parse_args()
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
        results = [run_configuration(workdir / f"devices-{count}", reads, device_settings(count, args.fake_devices))
                   for count in args.devices.split(",")]
    results += [line for saved in args.against for line in map(json.loads, saved.read_text().splitlines())
                if line.get("benchmark") == "multi_gpu"]
    most, *others = sorted(results, key=lambda line: -line["devices"])
    for other in others:
        emit(
            benchmark="multi_gpu_scaling",
            devices=most["devices"],
            against_devices=other["devices"],
            phase_speedup=round(other["embedding_phase_s"] / most["embedding_phase_s"], 2),
            ideal=round(most["devices"] / other["devices"], 2),
            outputs_identical=most["outputs_sha256"] == other["outputs_sha256"],
        )


def device_settings(count: str, fake: int | None) -> dict[str, str]:
    if fake:
        return {"VIRNUCPRO_FAKE_GPUS": str(fake if count == "all" else int(count))}
    if count == "all":
        return {}
    import torch

    return {"VIRNUCPRO_GPUS": ",".join(str(i) for i in range(min(int(count), torch.cuda.device_count())))}


def run_configuration(root: Path, reads: Path, devices_env: dict[str, str]) -> dict:
    home = root / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(CHECKOUT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, **devices_env, "DAGSTER_HOME": str(home), "VIRNUCPRO_STORE": str(root / "store")}

    def cli(*command: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", COMMANDS[command[0]], *command[1:]], env=env, cwd=CHECKOUT, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")

    cli("virnucpro-assets", "init")
    started = time.time()
    cli("virnucpro-assets", "add-sample", str(reads), "--name", SAMPLE)
    cli("dagster", "asset", "materialize", "-m", "virnucpro_assets", "--select", "sample_reads", "--partition", SAMPLE)
    shards = [f"{i:03d}" for i in range(int(os.environ["VIRNUCPRO_SHARDS"]))]
    import dagster as dg

    with running_daemon(env, CHECKOUT / "workspace.yaml"), dg.DagsterInstance.from_config(str(home)) as instance:
        cli("dagster", "job", "backfill", "-m", "virnucpro_assets", "-j", "shard_pipeline", "--noprompt",
            "--partitions", ",".join(f"{SAMPLE}|{s}" for s in shards))
        while True:
            runs = [r.dagster_run for r in instance.get_run_records(dg.RunsFilter(job_name="shard_pipeline"))]
            if len(runs) == len(shards) and all(r.is_finished for r in runs):
                break
            time.sleep(2)
        failed = [r.tags["dagster/partition"] for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
        if failed:
            raise RuntimeError(f"shard runs failed: {failed}")
        steps = gpu_steps(instance, runs)
    cli("dagster", "asset", "materialize", "-m", "virnucpro_assets", "--select", "sample_report", "--partition", SAMPLE)
    ingest_to_report = time.time() - started

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
            devices=len(by_device),
            device=device,
            gpu_steps=len(device_steps),
            busy_fraction=round(sum(s["end"] - s["start"] for s in device_steps) / (end - start), 3),
            tokens_per_s=round(sum(s["tokens"] for s in device_steps) / sum(s["embed_s"] for s in device_steps)),
        )
    for asset in GPU_ASSETS:
        asset_steps = [step for step in steps if step["asset"] == asset]
        load, embed = (sum(step[key] for step in asset_steps) for key in ("model_load_s", "embed_s"))
        emit(benchmark="multi_gpu_asset", devices=len(by_device), asset=asset, steps=len(asset_steps),
             model_load_s_per_step=round(load / len(asset_steps), 2), embed_s_per_step=round(embed / len(asset_steps), 2),
             model_load_share=round(load / (load + embed), 3),
             tokens_per_s_while_embedding=round(sum(step["tokens"] for step in asset_steps) / embed))
    report = root / "store" / "sample_report" / f"sample={SAMPLE}"
    outputs = hashlib.sha256()
    for name in ("prediction_results.txt", "prediction_results_highestscore.csv"):
        outputs.update((report / name).read_bytes())
    return emit(
        benchmark="multi_gpu",
        devices=len(by_device),
        shards=len(shards),
        embedding_phase_s=round(end - start, 1),
        ingest_to_report_s=round(ingest_to_report, 1),
        tokens=sum(s["tokens"] for s in steps),
        tokens_per_s_total=round(sum(s["tokens"] for s in steps) / (end - start)),
        one_gpu_step_per_device_at_a_time=exclusive,
        outputs_sha256=outputs.hexdigest(),
    )


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
