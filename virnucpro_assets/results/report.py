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

A read longer than the chunk length is judged chunk by chunk there; `per_read_table` adds a
per-read view of every read (`per_read.tsv`, `per_read.parquet`), with a decision at a threshold,
without replacing anything, and `report.html` puts it before a person.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from virnucpro_assets.results.html_report import REPORT_PAGE, Provenance, render_report
from virnucpro_assets.sequences.chunking import chunk_layout

PREDICTION_RESULTS_HEADER = ("Sequence_ID", "Prediction", "score1", "score2")
HIGHEST_SCORES_HEADER = ("Modified_ID", "Is_Virus")
PER_READ_COLUMNS = (
    "read_id",
    "length",
    "chunks",
    "kept_frames",
    "scored_chunks",
    "virus_chunks",
    "virus_chunk_share",
    "max_virus_score",
    "decision",
    "reason",
)
# Ids and labels: a list, or a polars column as the report's asset has them.
Strings = Sequence[str] | pl.Series
VIRUS, OTHERS, UNSCORED = "virus", "others", "unscored"
NO_CODON = "shorter than 3 letters: no codon"
NO_STOP_FREE_FRAME = "no stop-free frame"
NO_FINITE_SCORE = "no finite score"
_CHUNK_COUNT_BATCH = 1 << 20

# The original's drew_fig.py colours.
_VIRUS_COLOUR = "red"
_OTHERS_COLOUR = "darkblue"


def format_prediction_results(ids: Strings, predictions: Strings, scores: np.ndarray) -> str:
    """The text of prediction_results.txt for pairs in feature order; `scores` is [N, 2] float32.
    Fields are written as they are, unquoted, as the original's '\\t'.join does."""
    scores = _checked_scores(scores, len(ids))
    if len(predictions) != len(ids):
        raise ValueError(f"{len(ids)} pair ids but {len(predictions)} predictions")
    fields = (_strings(ids), _strings(predictions), float32_text(scores[:, 0]), float32_text(scores[:, 1]))
    return pl.DataFrame(dict(zip(PREDICTION_RESULTS_HEADER, fields))).write_csv(separator="\t", quote_style="never")


def float32_text(values: np.ndarray) -> pl.Series:
    """str() of each numpy float32. Polars writes the same shortest round-trip digits, positionally,
    for every float32 in [1e-4, 1] (a score's range; checked against str() for each of them) in a
    fraction of the time; the others (numpy's scientific notation below 1e-4 and from 1e6 on for
    float32, nan, inf) go through str()."""
    text = pl.Series(values, dtype=pl.Float32).cast(pl.String)
    with np.errstate(invalid="ignore"):  # signalling NaNs
        wide = values.astype(np.float64)
    others = np.flatnonzero(~((wide >= 1e-4) & (wide <= 1.0)))
    if others.size:
        text = text.scatter(others, [str(value) for value in values[others]])
    return text


def format_highest_scores(ids: Strings, scores: np.ndarray) -> str:
    """The text of prediction_results_highestscore.csv (tab-separated): one row per chunk, chunks
    in sorted order, Is_Virus True when the chunk's largest score2 >= its largest score1. An id
    holding '"' is quoted and the quote doubled, as pandas' to_csv (the csv module) writes it."""
    scores = _checked_scores(scores, len(ids))
    pairs = pl.DataFrame({"chunk_id": _strings(ids).str.head(-2), "score1": scores[:, 0], "score2": scores[:, 1]})
    chunks = _chunk_decisions(pairs, ["chunk_id"]).sort("chunk_id")
    rows = chunks.select(
        pl.col("chunk_id").alias(HIGHEST_SCORES_HEADER[0]),
        pl.when(pl.col("is_virus")).then(pl.lit("True")).otherwise(pl.lit("False")).alias(HIGHEST_SCORES_HEADER[1]),
    )
    return rows.write_csv(separator="\t", quote_style="necessary")


def per_read_rollup(read_ids: Strings, chunk_ids: Strings, scores: np.ndarray) -> pl.DataFrame:
    """Per read with at least one kept frame, in order of first appearance: `kept_frames`,
    `scored_chunks` (chunks with at least one kept frame), `virus_chunks` (of those, the ones the
    highest-score rule judges virus), `virus_chunk_share` (virus_chunks / scored_chunks) and
    `max_virus_score` (the largest score2 over all the read's frames, NaN skipped)."""
    if len(chunk_ids) != len(read_ids):
        raise ValueError(f"{len(read_ids)} read ids but {len(chunk_ids)} chunk ids")
    scores = _checked_scores(scores, len(read_ids))
    pairs = pl.DataFrame(
        {
            "read_id": _strings(read_ids),
            "chunk_id": _strings(chunk_ids),
            "score1": scores[:, 0],
            "score2": scores[:, 1],
        }
    )
    chunks = _chunk_decisions(pairs, ["read_id", "chunk_id"])
    return (
        chunks.group_by("read_id", maintain_order=True)
        .agg(
            kept_frames=pl.col("frames").sum().cast(pl.Int64),
            scored_chunks=pl.len().cast(pl.Int64),
            virus_chunks=pl.col("is_virus").sum().cast(pl.Int64),
            max_virus_score=pl.col("max_score2").max(),
        )
        .with_columns(virus_chunk_share=pl.col("virus_chunks") / pl.col("scored_chunks"))
        .select("read_id", "kept_frames", "scored_chunks", "virus_chunks", "virus_chunk_share", "max_virus_score")
    )


def per_read_table(
    read_ids: Strings | pa.Array,
    lengths: np.ndarray,
    pair_read_ids: Strings,
    chunk_ids: Strings,
    scores: np.ndarray,
    *,
    chunk_length: int,
    threshold: float,
) -> pl.DataFrame:
    """Every read of a sample, in the order given (the input file's), with PER_READ_COLUMNS.

    `read_ids` and `lengths` are all the sample's reads; `pair_read_ids`, `chunk_ids` and `scores`
    its scored pairs (kept frames), as for `per_read_rollup`. `chunks` is the number of chunks
    the read is cut into (ceil(length / chunk_length), by the project's chunking). `decision` is
    `virus` when max_virus_score >= `threshold`, compared in float32 (the scores' precision, so a
    score printed as the threshold reaches it), `others` below it, and `unscored` for a read with
    no score, whose `reason` says why: NO_CODON (shorter than one codon), NO_STOP_FREE_FRAME (none
    of the six frames of any of its chunks gives a non-empty protein without a stop; codons with
    letters other than ACGT translate to nothing) or NO_FINITE_SCORE (its frames scored NaN only).
    For unscored reads the chunk counts are 0 and virus_chunk_share and max_virus_score are null.

    Why 0.5 by default: score1 + score2 = 1, so score2 >= 0.5 is score2 >= score1, the classifier's
    own boundary; a read is `virus` when at least one of its frames is on the virus side of it
    (ties included, as in the original's highest-score rule). That is not the original's chunk
    verdict (Is_Virus: a chunk's largest score2 against its largest score1), which
    `virus_chunks` and `virus_chunk_share` count. A higher threshold calls fewer reads virus."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(read_ids) != lengths.size:
        raise ValueError(f"{len(read_ids)} read ids but {lengths.size} lengths")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"the virus threshold must lie in [0, 1], got {threshold!r}")
    reads = pl.DataFrame(
        {
            "read_id": pl.Series(read_ids, dtype=pl.String),
            "length": lengths,
            "chunks": chunk_counts(lengths, chunk_length),
        }
    )
    rollup = per_read_rollup(pair_read_ids, chunk_ids, scores)
    strangers = rollup.join(reads, on="read_id", how="anti")
    if strangers.height:
        raise ValueError(
            f"{strangers.height} scored read(s) are not among the sample's reads (first: {strangers['read_id'][0]!r}): "
            "the predictions were made from other reads"
        )
    score = pl.col("max_virus_score")
    return (
        reads.join(rollup, on="read_id", how="left", maintain_order="left")
        .with_columns(pl.col("kept_frames", "scored_chunks", "virus_chunks").fill_null(0))
        .with_columns(
            decision=pl.when(score.is_null())
            .then(pl.lit(UNSCORED))
            .when(score >= pl.lit(threshold, dtype=pl.Float32))
            .then(pl.lit(VIRUS))
            .otherwise(pl.lit(OTHERS)),
            reason=pl.when(score.is_not_null())
            .then(pl.lit(None, dtype=pl.String))
            .when(pl.col("length") < 3)
            .then(pl.lit(NO_CODON))
            .when(pl.col("kept_frames") == 0)
            .then(pl.lit(NO_STOP_FREE_FRAME))
            .otherwise(pl.lit(NO_FINITE_SCORE)),
        )
        .select(PER_READ_COLUMNS)
    )


def chunk_counts(lengths: np.ndarray, chunk_length: int) -> np.ndarray:
    """How many chunks each read (length > 0) is cut into, by the chunking translation uses;
    reads are laid out a million at a time so that memory stays small for any sample."""
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = np.zeros(lengths.size, dtype=np.int64)
    for start in range(0, lengths.size, _CHUNK_COUNT_BATCH):
        batch = lengths[start : start + _CHUNK_COUNT_BATCH]
        read_index, _, _ = chunk_layout(batch, chunk_length)
        counts[start : start + batch.size] = np.bincount(read_index, minlength=batch.size)
    return counts


def format_per_read(table: pl.DataFrame) -> str:
    """per_read.tsv: tab-separated with a header, null as an empty field, each score the shortest
    decimal that reads back as the same float32 (polars' writer: `5e-8` where
    prediction_results.txt has numpy's `5e-08`)."""
    return table.write_csv(separator="\t", null_value="")


def report_counts(per_read: pl.DataFrame, predictions: Strings) -> dict[str, int]:
    """The sample's counts, as the report and the materialization show them."""
    decisions = per_read["decision"]
    return {
        "reads": per_read.height,
        "reads_scored": int((decisions != UNSCORED).sum()),
        "virus_reads": int((decisions == VIRUS).sum()),
        "others_reads": int((decisions == OTHERS).sum()),
        "unscored_reads": int((decisions == UNSCORED).sum()),
        "reads_with_a_virus_chunk": int((per_read["virus_chunks"] > 0).sum()),
        "chunks": int(per_read["chunks"].sum()),
        "scored_chunks": int(per_read["scored_chunks"].sum()),
        "virus_chunks": int(per_read["virus_chunks"].sum()),
        "pairs": len(predictions),
        "virus_pairs": int((_strings(predictions) == VIRUS).sum()),
    }


def report_files(
    *,
    sample: str,
    read_ids: Strings | pa.Array,
    lengths: np.ndarray,
    pair_ids: Strings,
    predictions: Strings,
    pair_read_ids: Strings,
    chunk_ids: Strings,
    scores: np.ndarray,
    chunk_length: int,
    threshold: float,
    shards: int,
    provenance: Provenance,
) -> tuple[dict[str, bytes], dict[str, int]]:
    """The files of a sample's report and its counts, from all its reads and its pairs, both in
    input-file order: the original's two result files, `per_read.tsv` and `per_read.parquet`
    (every read, see `per_read_table`), the `per_read_scores.png` plot and `report.html` (see
    virnucpro_assets.results.html_report; `provenance` holds the shard steps' metadata)."""
    per_read = per_read_table(read_ids, lengths, pair_read_ids, chunk_ids, scores, chunk_length=chunk_length, threshold=threshold)
    counts = report_counts(per_read, predictions)
    plot = plot_read_scores(per_read, threshold)
    parquet = io.BytesIO()
    pq.write_table(per_read.to_arrow(), parquet, compression="zstd")
    page = render_report(
        sample=sample,
        counts=counts,
        per_read=per_read,
        plot_png=plot,
        provenance=provenance,
        settings={"chunk length": chunk_length, "virus threshold": threshold, "shards": shards},
    )
    files = {
        "prediction_results.txt": format_prediction_results(pair_ids, predictions, scores).encode(),
        "prediction_results_highestscore.csv": format_highest_scores(pair_ids, scores).encode(),
        "per_read.tsv": format_per_read(per_read).encode(),
        "per_read.parquet": parquet.getvalue(),
        "per_read_scores.png": plot,
        REPORT_PAGE: page.encode(),
    }
    return files, counts


def plot_read_scores(per_read: pl.DataFrame, threshold: float) -> bytes:
    """A PNG histogram of the scored reads' max_virus_score from `per_read_table`, stacked by
    decision (virus red, as drew_fig.py colours it; others dark blue), the threshold drawn; the
    unscored reads are counted in the title."""
    # matplotlib is imported here, when the plot is drawn: every step's process imports this
    # module, and matplotlib takes a few tenths of a second to import.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    scored = per_read.filter(pl.col("decision") != UNSCORED)
    virus = scored.filter(pl.col("decision") == VIRUS)["max_virus_score"].to_numpy()
    others = scored.filter(pl.col("decision") == OTHERS)["max_virus_score"].to_numpy()
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.hist(
        [others, virus],
        bins=np.linspace(0.0, 1.0, 41),
        stacked=True,
        color=[_OTHERS_COLOUR, _VIRUS_COLOUR],
        label=[f"others ({len(others)})", f"virus ({len(virus)})"],
    )
    axes.axvline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("highest virus score (score2) among the read's frames")
    axes.set_ylabel("reads")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(f"VirNucPro per-read scores: {scored.height} of {per_read.height} reads scored")
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(frameon=False, loc="upper center")
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100)
    return png.getvalue()


def _strings(values: Strings) -> pl.Series:
    return values.cast(pl.String) if isinstance(values, pl.Series) else pl.Series(list(values), dtype=pl.String)


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
        .agg(max_score1=pl.col("score1").max(), max_score2=pl.col("score2").max(), frames=pl.len())
        .with_columns(is_virus=(pl.col("max_score2") >= pl.col("max_score1")).fill_null(False))
    )
