"""Parse throughput of `sample_reads`: a gzipped FASTQ of 1M 150-bp reads cut from real genomes,
checked and split into shards exactly as the asset does (`split_reads`); the parse alone
(`read_batches`) in its blocks, in 16-MiB blocks, and through the exact Biopython path alone
(`parse_exactly`, the parser before the fast one); then what the shard key costs: `shard_of_reads`
(a hash of the read on either strand) against a hash of the read as written, on the same reads,
best of 3.

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
    from virnucpro_assets.sequences import reads as parser
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
        block = parser._BLOCK_BYTES
        parses = [  # (name, the fast path's block size, the parse)
            (f"fast, {block >> 10}-KiB blocks (read_batches)", block, parser.read_batches),
            ("fast, 16-MiB blocks", 16 << 20, parser.read_batches),
            ("exact, Biopython line by line (parse_exactly)", block, parser.parse_exactly),
        ]
        for name, block_bytes, parse in parses:
            parser._BLOCK_BYTES = block_bytes
            seconds, count = best_of(3, lambda: sum(len(batch.ids) for batch in parse(source, parser.ReadStats())))
            emit(benchmark="ingest_parse", parser=name, reads=count, seconds=round(seconds, 2))
        parser._BLOCK_BYTES = block

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
