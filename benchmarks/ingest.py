"""Parse throughput of `sample_reads`: a gzipped FASTQ of 1M 150-bp reads cut from real genomes,
checked and split into shards exactly as the asset does (`write_read_shards`).

    python -m benchmarks.ingest [--reads 1000000] [--shards 8]
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path

from benchmarks.common import emit, genome_reads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    from virnucpro_assets.sequences.sharding import write_read_shards

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "reads.fastq.gz"
        with gzip.open(source, "wt", compresslevel=6) as handle:
            for read_id, sequence in genome_reads(args.reads, 150, seed=1):
                handle.write(f"@{read_id}\n{sequence}\n+\n{'F' * len(sequence)}\n")
        outputs = [Path(scratch) / "out" / f"shard={i:03d}.parquet" for i in range(args.shards)]
        start = time.perf_counter()
        stats = write_read_shards(source, outputs)
        elapsed = time.perf_counter() - start
        emit(
            benchmark="ingest",
            format="fastq.gz",
            reads=stats.reads,
            file_mb=round(source.stat().st_size / 1e6, 1),
            seconds=round(elapsed, 2),
            reads_per_s=round(stats.reads / elapsed),
        )


if __name__ == "__main__":
    main()
