"""The sample report's files from a sample's scored pairs: `report_files` as `sample_report` calls
it (polars columns in), and prediction_results.txt alone against the original's way of writing it
(`'\\t'.join(map(str, ...))` per pair), on the pairs of reads cut from real genomes, best of 2.

    python -m benchmarks.report [--reads 1000000] [--check-every 1]

Scores are a softmax of random logits spread wide enough that some fall below 1e-4, where numpy
writes them in scientific notation. With --check-every K, also every K-th float32 of [1e-4, 1]
(K = 1: all 112,085,225 of them, about a minute and a half) is written by `float32_text` and by
numpy's `str()`, and the two compared: the range in which `float32_text` leaves the text to polars.
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl
import pyarrow as pa

from benchmarks.common import best_of, emit, genome_reads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=1_000_000)
    parser.add_argument("--length", type=int, default=150)
    parser.add_argument("--check-every", type=int, default=0, help="compare every K-th float32 of [1e-4, 1] with str() (0: none)")
    args = parser.parse_args()
    from virnucpro_assets.results.report import PREDICTION_RESULTS_HEADER, float32_text, format_prediction_results, report_files
    from virnucpro_assets.sequences.translation import translate_reads

    reads = genome_reads(args.reads, args.length, seed=2)
    read_ids = pa.array([read_id for read_id, _ in reads], pa.large_string())
    pairs = pl.from_arrow(translate_reads(read_ids, pa.array([s for _, s in reads], pa.large_string()), 500))
    logits = np.random.default_rng(0).normal(0.0, 6.0, (pairs.height, 2))
    scores = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    predictions = pl.Series(np.where(scores[:, 1] >= scores[:, 0], "virus", "others"))

    def whole_report():
        return report_files(
            sample="benchmark",
            read_ids=read_ids,
            lengths=np.full(len(reads), args.length),
            pair_ids=pairs["pair_id"],
            predictions=predictions,
            pair_read_ids=pairs["read_id"],
            chunk_ids=pairs["chunk_id"],
            scores=scores,
            chunk_length=500,
            threshold=0.5,
            shards=8,
            provenance={},
        )

    def the_originals_join(ids: list[str], labels: list[str]) -> str:
        lines = ["\t".join(PREDICTION_RESULTS_HEADER)] + ["\t".join(map(str, row)) for row in zip(ids, labels, scores[:, 0], scores[:, 1])]
        return "\n".join(lines) + "\n"

    report_s, (files, _) = best_of(2, whole_report)
    ours_s, ours = best_of(2, lambda: format_prediction_results(pairs["pair_id"], predictions, scores))
    ids, labels = pairs["pair_id"].to_list(), predictions.to_list()
    original_s, original = best_of(2, lambda: the_originals_join(ids, labels))
    emit(
        benchmark="report",
        reads=len(reads),
        pairs=pairs.height,
        report_files_s=round(report_s, 2),
        bytes_written=sum(len(content) for content in files.values()),
        prediction_results_s=round(ours_s, 2),
        original_join_s=round(original_s, 2),
        speedup=round(original_s / ours_s, 1),
        scores_below_1e_4=int((scores < 1e-4).sum()),
        identical=ours == original and files["prediction_results.txt"] == original.encode(),
    )
    if args.check_every:
        compared, differing = compare_with_str(float32_text, args.check_every)
        emit(benchmark="report_float32_text", every=args.check_every, compared=compared, differing=differing)


def compare_with_str(float32_text, every: int, block: int = 4_000_000) -> tuple[int, int]:
    """(values compared, values written differently): every `every`-th float32 from 1e-4 to 1."""
    low, high = np.float32(1e-4).view(np.uint32), np.float32(1.0).view(np.uint32)
    compared = differing = 0
    for start in range(int(low), int(high) + 1, block * every):
        values = np.arange(start, min(start + block * every, int(high) + 1), every, dtype=np.uint32).view(np.float32)
        values = values[values.astype(np.float64) >= 1e-4]
        differing += sum(ours != theirs for ours, theirs in zip(float32_text(values).to_list(), map(str, values)))
        compared += values.size
    return compared, differing


if __name__ == "__main__":
    main()
