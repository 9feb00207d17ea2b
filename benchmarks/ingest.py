"""Parse throughput of `sample_reads`: a gzipped FASTQ of 1M 150-bp reads cut from real genomes,
checked and split into shards exactly as the asset does (`split_reads`), then what the shard key
costs: `shard_of_reads` (a hash of the read on either strand) against a hash of the read as
written, on the same reads, best of 3.

    python -m benchmarks.ingest [--reads 1000000] [--shards 8]
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import best_of, emit, genome_reads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    from virnucpro_assets.sequences.sharding import sequence_hashes, shard_of_reads, split_reads

    reads = genome_reads(args.reads, 150, seed=1)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "reads.fastq.gz"
        with gzip.open(source, "wt", compresslevel=6) as handle:
            for read_id, sequence in reads:
                handle.write(f"@{read_id}\n{sequence}\n+\n{'F' * len(sequence)}\n")
        start = time.perf_counter()
        _, stats = split_reads(source, args.shards)
        elapsed = time.perf_counter() - start
        emit(
            benchmark="ingest",
            format="fastq.gz",
            reads=stats.reads,
            file_mb=round(source.stat().st_size / 1e6, 1),
            seconds=round(elapsed, 2),
            reads_per_s=round(stats.reads / elapsed),
        )

    sequences = [sequence for _, sequence in reads]
    keys = {
        "either strand (shard_of_reads)": lambda: shard_of_reads(sequences, args.shards),
        "as written": lambda: sequence_hashes(sequences) % np.uint64(args.shards),
    }
    for key, shard in keys.items():
        seconds, _ = best_of(3, shard)
        emit(benchmark="ingest_shard_key", key=key, reads=len(sequences), seconds=round(seconds, 3),
             us_per_read=round(seconds / max(len(sequences), 1) * 1e6, 2))  # fmt: skip


if __name__ == "__main__":
    main()
