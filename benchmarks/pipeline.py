"""Whole-pipeline wall time on one device: reads cut from real genomes through every asset, ingest to
report, through Dagster (in-process runs on a sqlite instance), with full-size random-weight models
in the real on-disk formats (fair-esm 3B checkpoint stored in fp16 as the hub's are, DNABERT-2 in the
Hugging Face layout, the classifier in the native format).

    python -m benchmarks.pipeline [--reads 200000,20000] [--read-length 150] [--shards 8] [--tiny]
    python -m benchmarks.pipeline --refit saved_output.jsonl

Each sample size is a sample of its own, after a small warm-up sample that takes the process's
CUDA start-up and measures it (`pipeline_cold_start`: how much longer the first step of each GPU
asset took than the others). One JSON line per asset and size: wall seconds over all its
partitions, and for the GPU steps the seconds spent loading the model, embedding, and the rest
(Dagster, store reads and writes: the overhead). Then each asset's wall time is fit as steps x fixed +
reads x per-read (see `extrapolate`) and projected to 1M and 22M reads at the default 8 shards,
assets one after another on one GPU as here, each GPU asset's cold start paid once; the model-load
share of a GPU step is given at that shard size (1M reads / 8 shards). `benchmarks/multi_gpu.py`
times the same through real step processes.
The embedding stages run at whatever rate the embedders reach; benchmarks/esm2_throughput.py and
dnabert_throughput.py say how close that is to the GPU's limit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import emit, genome_files
from benchmarks.gpu_common import tokenizer_training_text
from virnucpro_assets.demo.reads import cut_reads, load_genomes, write_fasta
from virnucpro_assets.pipeline.jobs import SAMPLE_ASSETS

ASSETS = list(SAMPLE_ASSETS)
SAMPLE_ASSETS = {"sample_reads", "sample_report"}
GPU_ASSETS = {"dnabert_embeddings", "esm2_embeddings"}
CHUNK_LENGTH = 500
PROJECTED_READS = (1_000_000, 22_000_000)
DEFAULT_SHARDS = 8
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--reads",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[200_000, 20_000],
        help="sample sizes, at least two for the extrapolation",
    )
    parser.add_argument("--read-length", type=int, default=150)
    parser.add_argument("--shards", type=int, default=DEFAULT_SHARDS)
    parser.add_argument("--tiny", action="store_true", help="the demo's tiny models (CPU smoke runs)")
    parser.add_argument("--genomes", type=Path, help="a folder like ../shared/data/genomes (default: benchmarks.common's)")
    parser.add_argument("--workdir", type=Path, help="where models, instance and store go (default: a temporary folder)")
    parser.add_argument("--refit", type=Path, help="only redo the fit and projection from a run's saved output")
    args = parser.parse_args()
    if args.refit:
        refit(args.refit)
        return
    with tempfile.TemporaryDirectory() as scratch:
        run(args, args.workdir or Path(scratch))


def run(args, workdir: Path) -> None:
    genomes = load_genomes(sorted(args.genomes.glob("*/*.fna.gz")) if args.genomes else genome_files())
    started = time.perf_counter()
    models = write_models(workdir / "models", genomes, args.tiny)
    emit(benchmark="pipeline", models_written_s=round(time.perf_counter() - started, 1), tiny=args.tiny)

    # The code location reads these when it is imported.
    os.environ.update(
        {
            "VIRNUCPRO_SHARDS": str(args.shards),
            "VIRNUCPRO_CHUNK_LENGTH": str(CHUNK_LENGTH),
            "VIRNUCPRO_STORE": str(workdir / "store"),
            "VIRNUCPRO_DNABERT_MODEL": str(models["dnabert"]),
            "VIRNUCPRO_ESM2_MODEL": str(models["esm2"]),
            "VIRNUCPRO_CLASSIFIER": str(models["classifier"]),
        }
    )
    import dagster as dg

    from virnucpro_assets.definitions import defs, partitions
    from virnucpro_assets.models.identity import hash_files
    from virnucpro_assets.pipeline.gpu import GpuResource
    from virnucpro_assets.pipeline.models import ModelsResource
    from virnucpro_assets.pipeline.partitions import SAMPLES
    from virnucpro_assets.pipeline.resources import TranslationSettings, store_resources
    from virnucpro_assets.samples import SampleRegistry

    hash_files([models["esm2"]])  # a user's first run hashes the checkpoint once; every later step finds it cached
    (workdir / "dagster_home").mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.local_temp(str(workdir / "dagster_home"))
    # Also given here, for when the code location was imported before the variables above were set.
    resources = {
        **defs.resources,
        **store_resources(str(workdir / "store")),
        "translation": TranslationSettings(chunk_length=CHUNK_LENGTH),
        "models": ModelsResource(dnabert=str(models["dnabert"]), esm2=str(models["esm2"]), classifier=str(models["classifier"])),
        "gpu": GpuResource(lease_dir=str(workdir / "leases")),
    }

    def run_sample(sample: str, reads: int) -> dict[str, list[Step]]:
        """Every asset of a new sample of `reads` reads, one materialization per partition: the steps of each asset."""
        path = workdir / f"{sample}.fasta"
        write_fasta(cut_reads(genomes, count=reads, lengths=(args.read_length,), seed=reads), path)
        SampleRegistry(workdir / "store").register(path, sample)
        instance.add_dynamic_partitions(SAMPLES, [sample])
        steps = {}
        for asset in ASSETS:
            keys = [sample] if asset in SAMPLE_ASSETS else partitions.shard_partitions(sample)
            steps[asset] = []
            for partition in keys:
                start = time.perf_counter()
                result = dg.materialize(
                    list(defs.assets),
                    instance=instance,
                    resources=resources,
                    selection=[asset],
                    partition_key=str(partition),
                    run_config=QUIET,
                )
                (event,) = result.get_asset_materialization_events()
                metadata = event.materialization.metadata
                steps[asset].append(
                    Step(
                        time.perf_counter() - start,
                        *(metadata[key].value if asset in GPU_ASSETS else 0.0 for key in ("model_load_s", "embed_s")),
                    )
                )
        return steps

    # The process's first step of each GPU asset pays CUDA's start-up, first kernel loads and (ESM-2)
    # compilation with a cold cache; a small sample first keeps that out of the measured sizes.
    warmup = run_sample("warmup", max(len(partitions.shard_keys), min(args.reads) // 10))
    cold_start = {asset: cold_start_s(warmup[asset]) for asset in GPU_ASSETS}
    emit(benchmark="pipeline_cold_start", **{f"{asset}_s": cold for asset, cold in cold_start.items()})
    fits = {}
    for reads in args.reads:
        steps = run_sample(f"reads{reads}", reads)
        for asset in ASSETS:
            line = totals(steps[asset])
            emit(benchmark="pipeline", reads=reads, asset=asset, **line)
            fits.setdefault(asset, []).append((reads, line))
        emit(
            benchmark="pipeline",
            reads=reads,
            shards=len(partitions.shard_keys),
            total_wall_s=round(sum(step.wall_s for asset_steps in steps.values() for step in asset_steps), 2),
        )
    if len(args.reads) >= 2:
        extrapolate(fits, cold_start)


@dataclass(frozen=True)
class Step:
    wall_s: float
    model_load_s: float  # GPU steps only, from the materialization's metadata
    embed_s: float


def cold_start_s(steps: list[Step]) -> float | None:
    """How much longer a sample's first step took than its others (same size): None with one step."""
    if len(steps) < 2:
        return None
    return round(steps[0].wall_s - statistics.median(step.wall_s for step in steps[1:]), 2)


def totals(steps: list[Step]) -> dict:
    line = {"steps": len(steps), "wall_s": round(sum(step.wall_s for step in steps), 2)}
    loads, embeds = sum(step.model_load_s for step in steps), sum(step.embed_s for step in steps)
    if embeds:
        line.update(model_load_s=round(loads, 2), embed_s=round(embeds, 2), overhead_s=round(line["wall_s"] - loads - embeds, 2))
    return line


def extrapolate(fits: dict[str, list[tuple[int, dict]]], cold_start: dict[str, float | None]) -> None:
    """Per asset, the line through the smallest and largest sample: wall = steps x fixed + reads x
    per_read (fixed: model load, Dagster, store reads and writes; per_read: the rest, embedding
    above all), projected to PROJECTED_READS at DEFAULT_SHARDS shards, plus each GPU asset's cold
    start once (a machine's first step of it: first kernel loads, and ESM-2's compilation before
    PyTorch has cached it on disk). What every step process pays on top in a deployment (imports,
    CUDA start-up) is in multi_gpu.py's real runs, not here. Also, per GPU asset, the model load's
    share of a step at 1M reads in DEFAULT_SHARDS shards."""
    projected = dict.fromkeys(PROJECTED_READS, 0.0)
    for asset, points in fits.items():
        (small, small_line), (big, big_line) = min(points, key=lambda p: p[0]), max(points, key=lambda p: p[0])
        steps = big_line["steps"]
        per_read = (big_line["wall_s"] - small_line["wall_s"]) / (big - small)
        fixed_per_step = max(0.0, (big_line["wall_s"] - per_read * big) / steps)
        line = {
            "benchmark": "pipeline_fit",
            "asset": asset,
            "fixed_s_per_step": round(fixed_per_step, 2),
            "per_million_reads_s": round(per_read * 1e6, 1),
        }
        if asset in GPU_ASSETS:
            load_per_step = big_line["model_load_s"] / steps
            embed_per_step = (big_line["embed_s"] - small_line["embed_s"]) / (big - small) * PROJECTED_READS[0] / DEFAULT_SHARDS
            line.update(
                model_load_s_per_step=round(load_per_step, 2),
                embed_s_per_step_at_1M_reads_8_shards=round(embed_per_step, 1),
                model_load_share_at_1M_reads_8_shards=round(load_per_step / (load_per_step + embed_per_step), 3),
            )
        emit(**line)
        default_steps = 1 if asset in SAMPLE_ASSETS else DEFAULT_SHARDS
        for reads in projected:
            projected[reads] += default_steps * fixed_per_step + per_read * reads + (cold_start.get(asset) or 0.0)
    for reads, seconds in projected.items():
        emit(
            benchmark="pipeline_projection",
            reads=reads,
            shards=DEFAULT_SHARDS,
            devices=1,
            wall_s=round(seconds),
            wall_min=round(seconds / 60, 1),
        )


def refit(path: Path) -> None:
    """extrapolate() again from the lines a run printed (saved as JSON lines)."""
    fits, cold_start = {}, {}
    for line in map(json.loads, path.read_text().splitlines()):
        if line.get("benchmark") == "pipeline" and "asset" in line:
            fits.setdefault(line["asset"], []).append((line["reads"], line))
        elif line.get("benchmark") == "pipeline_cold_start":
            cold_start = {asset: line.get(f"{asset}_s") for asset in GPU_ASSETS}
    extrapolate(fits, cold_start)


def write_models(directory: Path, genomes: list[tuple[str, str]], tiny: bool) -> dict[str, Path]:
    from virnucpro_assets.demo import GENOMES
    from virnucpro_assets.demo.models import build_demo_models, write_demo_classifier, write_tiny_dnabert, write_tiny_esm2_checkpoint

    if tiny:
        demo = build_demo_models(directory, GENOMES, CHUNK_LENGTH)
        return {"dnabert": demo.dnabert, "esm2": demo.esm2, "classifier": demo.classifier}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    esm2 = write_tiny_esm2_checkpoint(directory / "esm2_t36_3B_random.pt", 36, 2560, 40, dtype=torch.float16, device=device)
    dnabert = write_tiny_dnabert(
        directory / "dnabert_s_random",
        tokenizer_training_text(genomes),
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        vocab_size=4096,
        intermediate_size=3072,
    )
    classifier = directory / f"classifier_{CHUNK_LENGTH}.safetensors"
    write_demo_classifier(classifier, CHUNK_LENGTH, seed=11, feature_width=768 + 2560)
    return {"dnabert": dnabert, "esm2": esm2, "classifier": classifier}


if __name__ == "__main__":
    main()
