"""Chunking + six-frame translation: the project's vectorized path against a faithful per-codon
pure-Python loop like the original's, on the same reads cut from real genomes, on one core.

    python -m benchmarks.translate [--reads 20000] [--baseline-reads 5000]

Prints one JSON line per read length with reads/s of both (best of --repeats runs) and their ratio.
"""

from __future__ import annotations

import argparse

import pyarrow as pa

from benchmarks.common import best_of, emit, genome_reads, single_core


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=20000)
    parser.add_argument("--baseline-reads", type=int, default=5000, help="the slow loop runs on the first N reads")
    parser.add_argument("--repeats", type=int, default=3, help="each side's time is its best of this many runs")
    args = parser.parse_args()
    single_core()
    from benchmarks.original import process_reads
    from virnucpro_assets.sequences.translation import translate_reads

    for length in (150, 500):
        reads = genome_reads(args.reads, length, seed=length)
        # The asset hands translation Arrow columns read from Parquet; the original loop gets Python strings.
        ids = pa.array([r for r, _ in reads], pa.large_string())
        sequences = pa.array([s for _, s in reads], pa.large_string())
        baseline_reads = reads[: args.baseline_reads]
        ours, table = best_of(args.repeats, lambda: translate_reads(ids, sequences, 500))
        original, expected = best_of(args.repeats, lambda: process_reads(baseline_reads, 500))
        rows = table.slice(0, len(expected)).select(["pair_id", "nucleotide", "protein"]).to_pylist()
        same = [tuple(r.values()) for r in rows] == expected

        ours_rate, original_rate = len(reads) / ours, len(baseline_reads) / original
        emit(
            benchmark="translate",
            read_length=length,
            reads=len(reads),
            pairs=table.num_rows,
            project_reads_per_s=round(ours_rate),
            original_loop_reads_per_s=round(original_rate),
            ratio=round(ours_rate / original_rate, 1),
            identical_on_baseline_reads=same,
        )


if __name__ == "__main__":
    main()
