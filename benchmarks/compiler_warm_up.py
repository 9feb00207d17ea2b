"""Loading compiled ESM-2 in a fresh process, as a run's GPU step does, with and without the compiler
warm-up that a run starts (virnucpro_assets.models.compilation.start_warm_up).

    python -m benchmarks.compiler_warm_up [--pause 15] [--processes 3] [--layers 36 --dim 2560 --heads 40]

Each process imports the code location, starts the warm-up or not, pauses (standing in for the
run's CPU step and DNABERT-S step), then loads a random ESM-2 checkpoint with its layers compiled
and embeds a batch twice. One JSON line per process (the first one fills the on-disk compiler and
hash caches and is marked `cache_filling`), then the median load of each variant and their ratio.
Default sizes: ESM-2 3B on a GPU, a 6-layer model on the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import emit

PROTEIN = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ"


def step(checkpoint: Path, warm: bool, pause: float, proteins: int) -> dict:
    started = time.perf_counter()
    import virnucpro_assets.definitions  # noqa: F401  (what a step process imports first)
    from virnucpro_assets.models import compilation
    from virnucpro_assets.models.esm2 import Esm2Embedder

    line = {"warm_up": warm, "import_definitions_s": round(time.perf_counter() - started, 2)}
    if warm:
        compilation.start_warm_up()
    time.sleep(pause)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else None
    timed = time.perf_counter()
    embedder = Esm2Embedder.from_source(str(checkpoint), device, dtype, compiled=True)
    line["load_s"] = round(_synchronized(timed), 3)
    for name in ("first_embed_s", "second_embed_s"):
        timed = time.perf_counter()
        embedder.embed([PROTEIN] * proteins)
        line[name] = round(_synchronized(timed), 3)
    return line


def _synchronized(since: float) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - since


def main() -> None:
    parser = argparse.ArgumentParser()
    gpu = torch.cuda.is_available()
    parser.add_argument("--pause", type=float, default=15.0, help="seconds between the run's start and the ESM-2 load")
    parser.add_argument("--processes", type=int, default=3, help="processes per variant, after a cache-filling one")
    parser.add_argument("--layers", type=int, default=36 if gpu else 6)
    parser.add_argument("--dim", type=int, default=2560 if gpu else 320)
    parser.add_argument("--heads", type=int, default=40 if gpu else 20)
    parser.add_argument("--proteins", type=int, default=256 if gpu else 16)
    parser.add_argument("--step", nargs=2, metavar=("CHECKPOINT", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(Path(args.step[0]), args.step[1] == "warm", args.pause, args.proteins)), flush=True)
        return

    from virnucpro_assets.demo.models import write_tiny_esm2_checkpoint

    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(scratch) / "esm2_random.pt"
        write_tiny_esm2_checkpoint(
            checkpoint,
            args.layers,
            args.dim,
            args.heads,
            dtype=torch.float16 if gpu else torch.float32,
            device="cuda" if gpu else "cpu",
        )
        loads: dict[str, list[float]] = {"cold": [], "warm": []}
        for index, variant in enumerate(["cold"] + ["cold", "warm"] * args.processes):
            command = [
                sys.executable,
                "-m",
                "benchmarks.compiler_warm_up",
                "--step",
                str(checkpoint),
                variant,
                "--pause",
                str(args.pause),
                "--proteins",
                str(args.proteins),
            ]
            line = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            emit(benchmark="compiler_warm_up_step", cache_filling=index == 0, layers=args.layers, dim=args.dim, **line)
            if index:
                loads[variant].append(line["load_s"])
        cold, warm = (statistics.median(loads[v]) for v in ("cold", "warm"))
        emit(
            benchmark="compiler_warm_up",
            pause_s=args.pause,
            processes=args.processes,
            median_load_s_without=cold,
            median_load_s_with=warm,
            load_ratio=round(cold / max(warm, 1e-9), 1),
        )


if __name__ == "__main__":
    main()
