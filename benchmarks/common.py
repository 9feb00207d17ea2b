"""Shared helpers of the benchmarks: genome reads, JSON-line output, best-of timing, a dagster-daemon process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from virnucpro_assets.demo import GENOMES
from virnucpro_assets.demo.reads import cut_reads, load_genomes

CHECKOUT = Path(__file__).resolve().parents[1]
SHARED_GENOMES = CHECKOUT.parent / "shared" / "data" / "genomes"


def genome_files() -> list[Path]:
    """All genomes of ../shared/data/genomes when present, else the ones bundled with the demo."""
    files = sorted(SHARED_GENOMES.glob("*/*.fna.gz"))
    return files or GENOMES


def genome_reads(count: int, length: int, seed: int = 0) -> list[tuple[str, str]]:
    return cut_reads(load_genomes(genome_files()), count=count, lengths=(length,), seed=seed)


def patient_sqlite() -> None:
    """Give every sqlite connection this process opens a 30-s busy timeout, the one Dagster's event
    log uses: its run and schedule storages open theirs with pysqlite's 5 s, which a benchmark
    reading the instance while the daemon, runs and workers write to it outlasted once in CI (two
    cores, two such benchmarks at once): "database is locked"."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def wait_for_locks(connection, _record) -> None:
        if isinstance(connection, sqlite3.Connection):
            connection.execute("PRAGMA busy_timeout = 30000")

    if not event.contains(Engine, "connect", wait_for_locks):
        event.listen(Engine, "connect", wait_for_locks)


def emit(**record) -> dict:
    print(json.dumps(record), flush=True)
    return record


def best_of(repeats: int, work):
    """(shortest wall time, result) over `repeats` runs: the least disturbed by other load."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), result


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


@contextlib.contextmanager
def running_daemon(env: dict[str, str], workspace: Path):
    """`dagster-daemon run` (as a module, so it also runs from a PYTHONPATH) for the block; stopped
    by SIGTERM to its pid, then its process group (code servers, run workers) is killed so that
    nothing outlives the block."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster._daemon", "run", "-w", str(workspace)],
        env=env,
        cwd=CHECKOUT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
