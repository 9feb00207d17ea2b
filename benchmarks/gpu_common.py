"""What the GPU benchmarks share: inputs cut from real genomes, timing, the matmul ceiling, agreement."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from benchmarks.common import emit, genome_files
from virnucpro_assets.demo.reads import cut_reads, load_genomes

# The two workloads: 150-bp reads (one chunk, proteins of ~50 residues) and 500-bp chunks.
READ_LENGTHS = (150, 500)
CHUNK_LENGTH = 500


PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def throughput_arguments(parser: argparse.ArgumentParser, reads: int, budgets: list[int]) -> None:
    """The options both embedding-throughput benchmarks take (model sizes are their own)."""
    integers = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reads", type=int, default=reads, help="reads per workload; their kept frames are the inputs")
    parser.add_argument("--read-lengths", type=integers, default=list(READ_LENGTHS))
    parser.add_argument("--budgets", type=integers, default=budgets)
    parser.add_argument("--compiled", action="store_true", help="also time the torch.compile'd layers")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="also time bf16")
    parser.add_argument(
        "--fidelity",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the fp32 reference run and agreement figures (slow for ESM-2 3B: ~8K tokens/s)",
    )
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (the median is reported)")
    parser.add_argument("--genomes", type=Path, help="a folder like ../shared/data/genomes (default: benchmarks.common's)")
    parser.add_argument("--profile", action="store_true", help="also print the top kernels of the last variant's run")


def measure_peak(args: argparse.Namespace) -> tuple[torch.device, float]:
    """The benchmark's device and its matmul peak (TFLOP/s), printed as a JSON line."""
    device = torch.device(args.device)
    peak = matmul_peak_tflops(device, args.matmul_size)
    emit(benchmark="matmul_peak", device=device_name(device), dtype="bf16", size=args.matmul_size, tflops=round(peak, 1))
    return device, peak


def kept_pairs(reads: int, read_length: int, genomes: Path | None = None) -> pa.Table:
    """translated_proteins rows (nucleotide + protein of each stop-free frame) of `reads` reads cut
    from real genomes (all of `genomes`/*/*.fna.gz, else benchmarks.common's choice)."""
    from virnucpro_assets.sequences.translation import translate_reads

    files = sorted(genomes.glob("*/*.fna.gz")) if genomes else genome_files()
    cut = cut_reads(load_genomes(files), count=reads, lengths=(read_length,), seed=read_length)
    return translate_reads([r for r, _ in cut], [s for _, s in cut], CHUNK_LENGTH)


def tokenizer_training_text(genomes: list[tuple[str, str]], piece: int = 1000, per_genome: int = 200_000) -> list[str]:
    """Pieces of the genomes to train a DNABERT-sized BPE vocabulary on in seconds (whole genomes as
    single words take BPE training minutes); 500-bp chunks come out at ~100 tokens, as with DNABERT-S."""
    return [sequence[i : i + piece] for _, sequence in genomes for i in range(0, min(len(sequence), per_genome), piece)]


def seconds(work: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """Wall time of `work`, all its device work included, and its result."""
    synchronize(device)
    start = time.perf_counter()
    result = work()
    synchronize(device)
    return time.perf_counter() - start, result


def median_seconds(work: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, object]:
    """The median of `repeats` timings of `work` (a GPU's rate drifts by 10-20 % between runs), and
    the last result."""
    timings = [seconds(work, device) for _ in range(repeats)]
    return statistics.median(elapsed for elapsed, _ in timings), timings[-1][1]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_tflops(device: torch.device, size: int = 8192, repeats: int = 20) -> float:
    """Median rate of a bf16 size³ matrix product (fp32 on the CPU), rotating over three input pairs
    so that no repeat finds its inputs in cache; random inputs, never zeros."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    pairs = [(torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)) for _ in range(3)]
    for a, b in pairs:
        a @ b
    times = []
    for i in range(repeats):
        a, b = pairs[i % 3]
        elapsed, _ = seconds(lambda: a @ b, device)
        times.append(elapsed)
    return 2 * size**3 / statistics.median(times) / 1e12


def top_kernels(work: Callable[[], object], device: torch.device, count: int = 12) -> dict:
    """The kernels of one run of `work` by device time (torch.profiler): [name, ms, share] each, and
    the wall time of that run against the sum of its kernels' times (what the device idled); on a
    GPU also the host's operators by their own time (`host_top`), where the device's idle time goes."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CUDA, ProfilerActivity.CPU] if device.type == "cuda" else [ProfilerActivity.CPU]
    with profile(activities=activities) as profiler:
        wall, _ = seconds(work, device)
    averages = profiler.key_averages()
    busy, top = _ranked(averages, "CUDA" if device.type == "cuda" else "CPU", count)
    figures = {"wall_s": round(wall, 3), "kernels_s": busy, "top": top}
    if device.type == "cuda":
        figures["host_s"], figures["host_top"] = _ranked(averages, "CPU", count)
    return figures


def _ranked(averages, kind: str, count: int) -> tuple[float, list]:
    """(total seconds, the top `count` [name, ms, share]) of the profiler's `kind` ("CUDA" or "CPU") events."""

    def spent(event) -> float:
        return (event.self_device_time_total if kind == "CUDA" else event.self_cpu_time_total) / 1e6

    events = [event for event in averages if event.device_type.name == kind]
    busy = sum(map(spent, events))
    ranked = sorted(events, key=lambda event: -spent(event))[:count]
    return round(busy, 3), [[event.key[:100], round(spent(event) * 1e3, 2), round(spent(event) / max(busy, 1e-12), 3)] for event in ranked]


def cosines(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity (float64)."""
    a, b = vectors.astype(np.float64), reference.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def agreement(vectors: np.ndarray, reference: np.ndarray) -> dict:
    """How closely `vectors` follow `reference`: every row finite, min/mean cosine, max abs diff."""
    finite = bool(np.isfinite(vectors).all())
    similarity = cosines(vectors, reference) if finite else np.array([float("nan")])
    return {
        "finite": finite,
        "min_cosine": round(float(similarity.min()), 6),
        "mean_cosine": round(float(similarity.mean()), 6),
        "max_abs_diff": float(np.abs(vectors - reference).max()) if finite else None,
    }


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
