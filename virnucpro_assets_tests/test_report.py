import math

import matplotlib.image
import numpy as np
import polars as pl
import pytest

from virnucpro_assets.results.report import (
    format_highest_scores,
    format_prediction_results,
    per_read_rollup,
    plot_read_scores,
)

# Reads r9 (one chunk), r10 (two chunks) and r2 (one chunk), several frames per chunk.
PAIRS = [
    ("r9_chunk_1F1", "others", 0.7, 0.3),
    ("r9_chunk_1R2", "virus", 0.2, 0.8),  # chunk r9_chunk_1: max score2 0.8 >= max score1 0.7
    ("r10_chunk_1F1", "others", 0.6, 0.4),
    ("r10_chunk_1R1", "virus", 0.45, 0.55),  # a virus frame, yet max score2 0.55 < max score1 0.6
    ("r10_chunk_2F3", "others", 0.5, 0.5),  # a tie: 'others' as a frame, True as a chunk
    ("r2_chunk_1F2", "others", 0.9, 0.1),
]
IDS = [pair[0] for pair in PAIRS]
PREDICTIONS = [pair[1] for pair in PAIRS]
SCORES = np.array([pair[2:] for pair in PAIRS], dtype=np.float32)


def test_prediction_results_print_scores_as_numpy_float32_does():
    ids = ["r1_chunk_1F1", "r1_chunk_1R3", "r2_chunk_1F2", "r2_chunk_2R1", "r3_chunk_1F1"]
    predictions = ["virus", "others", "others", "others", "others"]
    scores = np.array(
        [[0.12100612, 0.8789939], [1.0, 0.0], [0.99999994, 5e-08], [0.9999, 1e-4], [0.5, 0.5]], dtype=np.float32
    )
    assert format_prediction_results(ids, predictions, scores) == (
        "Sequence_ID\tPrediction\tscore1\tscore2\n"
        "r1_chunk_1F1\tvirus\t0.12100612\t0.8789939\n"
        "r1_chunk_1R3\tothers\t1.0\t0.0\n"
        "r2_chunk_1F2\tothers\t0.99999994\t5e-08\n"
        "r2_chunk_2R1\tothers\t0.9999\t1e-04\n"
        "r3_chunk_1F1\tothers\t0.5\t0.5\n"
    )


def test_prediction_results_keep_feature_order():
    assert format_prediction_results(IDS, PREDICTIONS, SCORES) == (
        "Sequence_ID\tPrediction\tscore1\tscore2\n"
        "r9_chunk_1F1\tothers\t0.7\t0.3\n"
        "r9_chunk_1R2\tvirus\t0.2\t0.8\n"
        "r10_chunk_1F1\tothers\t0.6\t0.4\n"
        "r10_chunk_1R1\tvirus\t0.45\t0.55\n"
        "r10_chunk_2F3\tothers\t0.5\t0.5\n"
        "r2_chunk_1F2\tothers\t0.9\t0.1\n"
    )


def test_highest_scores_one_row_per_chunk_in_string_order():
    assert format_highest_scores(IDS, SCORES) == (
        "Modified_ID\tIs_Virus\n"
        "r10_chunk_1\tFalse\n"
        "r10_chunk_2\tTrue\n"
        "r2_chunk_1\tFalse\n"
        "r9_chunk_1\tTrue\n"
    )


def test_highest_scores_skip_nan_and_quote_like_pandas():
    ids = ['a"b_chunk_1F1', "c_chunk_1F1", "c_chunk_1R1", "d_chunk_1F1"]
    scores = np.array([[0.4, 0.6], [math.nan, math.nan], [0.3, 0.7], [math.nan, math.nan]], dtype=np.float32)
    assert format_highest_scores(ids, scores) == (
        'Modified_ID\tIs_Virus\n"a""b_chunk_1"\tTrue\nc_chunk_1\tTrue\nd_chunk_1\tFalse\n'
    )


def test_empty_results_are_headers_only():
    empty = np.zeros((0, 2), dtype=np.float32)
    assert format_prediction_results([], [], empty) == "Sequence_ID\tPrediction\tscore1\tscore2\n"
    assert format_highest_scores([], empty) == "Modified_ID\tIs_Virus\n"


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="float32 of shape"):
        format_prediction_results(IDS, PREDICTIONS, SCORES.astype(np.float64))
    with pytest.raises(ValueError, match=r"float32 of shape \[5, 2\]"):
        format_highest_scores(IDS[:5], SCORES)
    with pytest.raises(ValueError, match="6 pair ids but 5 predictions"):
        format_prediction_results(IDS, PREDICTIONS[:5], SCORES)


def rollup():
    read_ids = [pair_id.split("_chunk_")[0] for pair_id in IDS]
    chunk_ids = [pair_id[:-2] for pair_id in IDS]
    return per_read_rollup(read_ids, chunk_ids, SCORES)


def test_per_read_rollup():
    result = rollup()
    assert result.columns == ["read_id", "scored_chunks", "virus_chunks", "virus_chunk_share", "max_virus_score"]
    assert result["read_id"].to_list() == ["r9", "r10", "r2"]  # first appearance, as the input
    assert result["scored_chunks"].to_list() == [1, 2, 1]
    assert result["virus_chunks"].to_list() == [1, 1, 0]
    assert result["virus_chunk_share"].to_list() == [1.0, 0.5, 0.0]
    assert result["max_virus_score"].to_list() == [float(np.float32(score)) for score in (0.8, 0.55, 0.1)]


def test_plot_writes_a_png(tmp_path):
    for name, table in (("reads.png", rollup()), ("empty.png", rollup().clear())):
        plot_read_scores(table, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(tmp_path / name).shape[:2] == (450, 800)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty.png", "reads.png"]


def test_rollup_of_no_pairs_is_empty():
    result = per_read_rollup([], [], np.zeros((0, 2), dtype=np.float32))
    assert result.height == 0 and result.schema["scored_chunks"] == pl.Int64
