"""The original's output files, a per-read roll-up and a plot, from per-pair scores in feature order.

- `prediction_results.txt`: one row per kept pair, scores written as `str()` of a numpy float32
  (shortest text that reads back to the same float32: '0.12100612', '1.0', '5e-08', '1e-04'), as
  the original's `'\\t'.join(map(str, probability))` does. An f-string would not do: it formats a
  float32 through Python's float and prints '0.12100612372159958'.
- `prediction_results_highestscore.csv`, tab-separated despite its name: the original re-reads the
  .txt with pandas, sets Modified_ID = Sequence_ID[:-2] (the chunk), groups by it and writes
  `max(score2) >= max(score1)` per chunk. pandas' groupby sorts its keys, which for strings is
  Python's code-point order ('r10_chunk_1' < 'r2_chunk_1' < 'r9_chunk_1'); its max skips NaN; its
  to_csv writes True/False and quotes a field holding '"' the csv module's way. Comparing the
  float32 scores here decides exactly as comparing the re-read text did, because distinct float32
  values print as distinct shortest decimals in the same order.

A read longer than the chunk length is judged chunk by chunk there; `per_read_rollup` adds a
per-read view without replacing anything.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from matplotlib.figure import Figure

PREDICTION_RESULTS_HEADER = ("Sequence_ID", "Prediction", "score1", "score2")
HIGHEST_SCORES_HEADER = ("Modified_ID", "Is_Virus")

# The original's drew_fig.py colours.
_VIRUS_COLOUR = "red"
_OTHERS_COLOUR = "darkblue"


def format_prediction_results(ids: Sequence[str], predictions: Sequence[str], scores: np.ndarray) -> str:
    """The text of prediction_results.txt for pairs in feature order; `scores` is [N, 2] float32."""
    scores = _checked_scores(scores, len(ids))
    if len(predictions) != len(ids):
        raise ValueError(f"{len(ids)} pair ids but {len(predictions)} predictions")
    lines = ["\t".join(PREDICTION_RESULTS_HEADER)]
    for pair_id, prediction, (score1, score2) in zip(ids, predictions, scores):
        lines.append(f"{pair_id}\t{prediction}\t{str(score1)}\t{str(score2)}")
    return "\n".join(lines) + "\n"


def format_highest_scores(ids: Sequence[str], scores: np.ndarray) -> str:
    """The text of prediction_results_highestscore.csv (tab-separated): one row per chunk, chunks
    in sorted order, Is_Virus True when the chunk's largest score2 >= its largest score1."""
    scores = _checked_scores(scores, len(ids))
    pairs = pl.DataFrame(
        {"chunk_id": pl.Series(list(ids), dtype=pl.String).str.head(-2), "score1": scores[:, 0], "score2": scores[:, 1]}
    )
    chunks = _chunk_decisions(pairs, ["chunk_id"]).sort("chunk_id")
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t", lineterminator="\n")  # what pandas' to_csv uses
    writer.writerow(HIGHEST_SCORES_HEADER)
    writer.writerows(
        (chunk_id, "True" if is_virus else "False")
        for chunk_id, is_virus in chunks.select("chunk_id", "is_virus").iter_rows()
    )
    return text.getvalue()


def per_read_rollup(read_ids: Sequence[str], chunk_ids: Sequence[str], scores: np.ndarray) -> pl.DataFrame:
    """Per read, in order of first appearance: `scored_chunks` (chunks with at least one kept
    frame), `virus_chunks` (of those, the ones the highest-score rule judges virus),
    `virus_chunk_share` and `max_virus_score` (the largest score2 over all the read's frames).

    An addition to the original's chunk-level verdicts, not a replacement; reads none of whose
    frames were kept do not appear."""
    if len(chunk_ids) != len(read_ids):
        raise ValueError(f"{len(read_ids)} read ids but {len(chunk_ids)} chunk ids")
    scores = _checked_scores(scores, len(read_ids))
    pairs = pl.DataFrame(
        {
            "read_id": pl.Series(list(read_ids), dtype=pl.String),
            "chunk_id": pl.Series(list(chunk_ids), dtype=pl.String),
            "score1": scores[:, 0],
            "score2": scores[:, 1],
        }
    )
    chunks = _chunk_decisions(pairs, ["read_id", "chunk_id"])
    return (
        chunks.group_by("read_id", maintain_order=True)
        .agg(
            scored_chunks=pl.len().cast(pl.Int64),
            virus_chunks=pl.col("is_virus").sum().cast(pl.Int64),
            max_virus_score=pl.col("max_score2").max(),
        )
        .with_columns(virus_chunk_share=pl.col("virus_chunks") / pl.col("scored_chunks"))
        .select("read_id", "scored_chunks", "virus_chunks", "virus_chunk_share", "max_virus_score")
    )


def report_files(
    pair_ids: Sequence[str], predictions: Sequence[str], read_ids: Sequence[str], chunk_ids: Sequence[str], scores: np.ndarray
) -> tuple[dict[str, bytes], pl.DataFrame]:
    """The files of a sample's report from its pairs in input-file order, and the per-read roll-up:
    the original's two result files, `per_read.parquet` and the `per_read_scores.png` plot."""
    rollup = per_read_rollup(read_ids, chunk_ids, scores)
    per_read = io.BytesIO()
    pq.write_table(rollup.to_arrow(), per_read, compression="zstd")
    files = {
        "prediction_results.txt": format_prediction_results(pair_ids, predictions, scores).encode(),
        "prediction_results_highestscore.csv": format_highest_scores(pair_ids, scores).encode(),
        "per_read.parquet": per_read.getvalue(),
        "per_read_scores.png": plot_read_scores(rollup),
    }
    return files, rollup


def plot_read_scores(rollup: pl.DataFrame) -> bytes:
    """A PNG histogram of the reads' max_virus_score from `per_read_rollup`, stacked by
    whether at least half of a read's scored chunks were judged virus (red, as drew_fig.py colours
    virus) or not (dark blue). Reads without a score (only NaN scores) are counted in the title only."""
    scored = rollup.drop_nulls("max_virus_score")
    mostly_virus = scored.filter(pl.col("virus_chunk_share") >= 0.5)["max_virus_score"].to_numpy()
    mostly_others = scored.filter(pl.col("virus_chunk_share") < 0.5)["max_virus_score"].to_numpy()
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.hist(
        [mostly_others, mostly_virus],
        bins=np.linspace(0.0, 1.0, 41),
        stacked=True,
        color=[_OTHERS_COLOUR, _VIRUS_COLOUR],
        label=[
            f"fewer than half the chunks virus ({len(mostly_others)})",
            f"half or more chunks virus ({len(mostly_virus)})",
        ],
    )
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("highest virus score (score2) among the read's frames")
    axes.set_ylabel("reads")
    axes.set_title(f"VirNucPro per-read scores, {rollup.height} reads")
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(frameon=False, loc="upper center")
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100)
    return png.getvalue()


def _checked_scores(scores: np.ndarray, pair_count: int) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.shape != (pair_count, 2) or scores.dtype != np.float32:
        raise ValueError(f"scores must be float32 of shape [{pair_count}, 2], got {scores.dtype} {list(scores.shape)}")
    return scores


def _chunk_decisions(pairs: pl.DataFrame, chunk_keys: list[str]) -> pl.DataFrame:
    """Per chunk, in order of first appearance: the largest score1 and score2 over its frames
    (NaN skipped, as pandas' max does) and is_virus = max_score2 >= max_score1 (False when either
    is missing, as a comparison with NaN is in pandas)."""
    return (
        pairs.with_columns(pl.col("score1", "score2").fill_nan(None))
        .group_by(chunk_keys, maintain_order=True)
        .agg(max_score1=pl.col("score1").max(), max_score2=pl.col("score2").max())
        .with_columns(is_virus=(pl.col("max_score2") >= pl.col("max_score1")).fill_null(False))
    )
