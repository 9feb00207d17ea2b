"""Shared helpers of the benchmarks: genome reads and JSON-line output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from virnucpro_assets.demo import GENOMES
from virnucpro_assets.demo.reads import cut_reads, load_genomes

SHARED_GENOMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "genomes"


def genome_files() -> list[Path]:
    """All genomes of ../shared/data/genomes when present, else the ones bundled with the demo."""
    files = sorted(SHARED_GENOMES.glob("*/*.fna.gz"))
    return files or GENOMES


def genome_reads(count: int, length: int, seed: int = 0) -> list[tuple[str, str]]:
    return cut_reads(load_genomes(genome_files()), count=count, lengths=(length,), seed=seed)


def emit(**record) -> dict:
    print(json.dumps(record), flush=True)
    return record


def single_core() -> None:
    """Pin numpy/Arrow/torch to one thread so figures compare like for like on one core."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ARROW_NUM_THREADS"):
        os.environ[variable] = "1"
    try:
        import pyarrow

        pyarrow.set_cpu_count(1)
        pyarrow.set_io_thread_count(1)
    except ImportError:  # pragma: no cover
        print("pyarrow missing", file=sys.stderr)
