import io
import math
import re

import matplotlib.image
import numpy as np
import polars as pl
import pytest

from virnucpro_assets.results.html_report import render_report
from virnucpro_assets.results.report import (
    NO_CODON,
    NO_FINITE_SCORE,
    NO_STOP_FREE_FRAME,
    PER_READ_COLUMNS,
    PREDICTION_RESULTS_HEADER,
    float32_text,
    format_highest_scores,
    format_per_read,
    format_prediction_results,
    per_read_rollup,
    per_read_table,
    plot_read_scores,
    report_counts,
    report_files,
)
from virnucpro_assets.sequences.translation import translate_reads

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
    scores = np.array([[0.12100612, 0.8789939], [1.0, 0.0], [0.99999994, 5e-08], [0.9999, 1e-4], [0.5, 0.5]], dtype=np.float32)
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
        "Modified_ID\tIs_Virus\nr10_chunk_1\tFalse\nr10_chunk_2\tTrue\nr2_chunk_1\tFalse\nr9_chunk_1\tTrue\n"
    )


def test_highest_scores_skip_nan_and_quote_like_pandas():
    ids = ['a"b_chunk_1F1', "c_chunk_1F1", "c_chunk_1R1", "d_chunk_1F1"]
    scores = np.array([[0.4, 0.6], [math.nan, math.nan], [0.3, 0.7], [math.nan, math.nan]], dtype=np.float32)
    assert format_highest_scores(ids, scores) == ('Modified_ID\tIs_Virus\n"a""b_chunk_1"\tTrue\nc_chunk_1\tTrue\nd_chunk_1\tFalse\n')


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
    assert result.columns == ["read_id", "kept_frames", "scored_chunks", "virus_chunks", "virus_chunk_share", "max_virus_score"]
    assert result["read_id"].to_list() == ["r9", "r10", "r2"]  # first appearance, as the input
    assert result["kept_frames"].to_list() == [2, 3, 1]
    assert result["scored_chunks"].to_list() == [1, 2, 1]
    assert result["virus_chunks"].to_list() == [1, 1, 0]
    assert result["virus_chunk_share"].to_list() == [1.0, 0.5, 0.0]
    assert result["max_virus_score"].to_list() == [float(np.float32(score)) for score in (0.8, 0.55, 0.1)]


def test_rollup_of_no_pairs_is_empty():
    result = per_read_rollup([], [], np.zeros((0, 2), dtype=np.float32))
    assert result.height == 0 and result.schema["scored_chunks"] == pl.Int64


# Hand-made reads, in file order, through the project's own chunking and translation.
STOP_FREE = "GCC"  # Ala; its frames and their reverse complements hold no stop
READS = [
    ("long", STOP_FREE * 400),  # 1200 letters: 3 chunks of 500, six kept frames each
    ("stops", "TAAATAAATAATTATTTATTTA"),  # a stop in every one of its six frames
    ("edge", STOP_FREE * 50),  # its highest score2 equals the threshold
    ("ab", "AC"),  # shorter than a codon
    ("below", STOP_FREE * 60),  # just under the threshold
    ("nan", STOP_FREE * 20),  # scored NaN only
]
THRESHOLD = 0.7
JUST_BELOW = np.nextafter(np.float32(THRESHOLD), np.float32(0))


def hand_made_pairs():
    pairs = translate_reads([r[0] for r in READS], [r[1] for r in READS], 500)
    read_ids, chunk_ids = pairs.column("read_id").to_pylist(), pairs.column("chunk_id").to_pylist()
    score2 = []
    for read_id, chunk_id in zip(read_ids, chunk_ids):
        first = len(score2) == 0 or read_ids[len(score2) - 1] != read_id
        score2.append(
            {
                "long": 0.9 if chunk_id == "long_chunk_1" else 0.2,
                "edge": np.float32(THRESHOLD) if first else 0.1,
                "below": JUST_BELOW if first else 0.1,
                "nan": math.nan,
            }[read_id]
        )
    score2 = np.array(score2, dtype=np.float32)
    return pairs, read_ids, chunk_ids, np.column_stack([1 - score2, score2]).astype(np.float32)


def test_every_read_has_a_row_in_file_order_with_chunks_frames_and_a_decision():
    _pairs, read_ids, chunk_ids, scores = hand_made_pairs()
    assert sorted(set(read_ids)) == ["below", "edge", "long", "nan"]  # no frame kept for "stops" and "ab"
    table = per_read_table(
        [r[0] for r in READS], [len(r[1]) for r in READS], read_ids, chunk_ids, scores, chunk_length=500, threshold=THRESHOLD
    )
    assert table.columns == list(PER_READ_COLUMNS)
    rows = {row["read_id"]: row for row in table.iter_rows(named=True)}
    assert list(rows) == ["long", "stops", "edge", "ab", "below", "nan"]
    assert [rows[r]["length"] for r in rows] == [1200, 22, 150, 2, 180, 60]
    assert [rows[r]["chunks"] for r in rows] == [3, 1, 1, 1, 1, 1]
    assert [rows[r]["kept_frames"] for r in rows] == [18, 0, 6, 0, 6, 6]
    assert [rows[r]["scored_chunks"] for r in rows] == [3, 0, 1, 0, 1, 1]
    assert rows["long"]["virus_chunks"] == 1 and rows["long"]["virus_chunk_share"] == pytest.approx(1 / 3)
    assert rows["long"]["max_virus_score"] == pytest.approx(0.9) and rows["long"]["decision"] == "virus"
    # Equal to the threshold is virus, compared in float32; the next float32 down is not.
    assert (rows["edge"]["decision"], rows["below"]["decision"]) == ("virus", "others")
    assert rows["below"]["virus_chunks"] == 0 and rows["edge"]["virus_chunks"] == 0  # 0.7 < score1 max 0.9
    assert {r: (rows[r]["decision"], rows[r]["reason"]) for r in ("stops", "ab", "nan")} == {
        "stops": ("unscored", NO_STOP_FREE_FRAME),
        "ab": ("unscored", NO_CODON),
        "nan": ("unscored", NO_FINITE_SCORE),
    }
    assert all(rows[r]["reason"] is None for r in ("long", "edge", "below"))
    assert all(rows[r]["max_virus_score"] is None and rows[r]["virus_chunk_share"] is None for r in ("stops", "ab"))

    lines = format_per_read(table).splitlines()
    assert lines[0].split("\t") == list(PER_READ_COLUMNS)
    assert lines[2] == "stops\t22\t1\t0\t0\t0\t\t\tunscored\tno stop-free frame"
    assert lines[3].split("\t")[7:] == ["0.7", "virus", ""]
    assert len(lines) == 1 + len(READS)

    counts = report_counts(table, ["virus"] * 3 + ["others"] * (len(read_ids) - 3))
    assert (counts["reads"], counts["reads_scored"], counts["virus_reads"], counts["others_reads"], counts["unscored_reads"]) == (
        6,
        3,
        2,
        1,
        3,
    )
    assert (counts["chunks"], counts["scored_chunks"], counts["virus_chunks"]) == (8, 6, 1)
    assert (counts["pairs"], counts["virus_pairs"]) == (36, 3)


def test_the_threshold_moves_the_decision_and_must_be_a_probability():
    _pairs, read_ids, chunk_ids, scores = hand_made_pairs()
    ids, lengths = [r[0] for r in READS], [len(r[1]) for r in READS]
    decided = per_read_table(ids, lengths, read_ids, chunk_ids, scores, chunk_length=500, threshold=0.95)
    assert decided["decision"].to_list() == ["others", "unscored", "others", "unscored", "others", "unscored"]
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\], got 1.5"):
        per_read_table(ids, lengths, read_ids, chunk_ids, scores, chunk_length=500, threshold=1.5)


def test_scores_of_reads_the_sample_lacks_are_refused():
    _pairs, read_ids, chunk_ids, scores = hand_made_pairs()
    with pytest.raises(ValueError, match="not among the sample's reads \\(first: 'long'\\)"):
        per_read_table(["edge", "below", "nan"], [150, 180, 60], read_ids, chunk_ids, scores, chunk_length=500, threshold=0.5)


def report(**changes):
    pairs, read_ids, chunk_ids, scores = hand_made_pairs()
    arguments = {
        "sample": "pond",
        "read_ids": [r[0] for r in READS],
        "lengths": [len(r[1]) for r in READS],
        "pair_ids": pairs.column("pair_id").to_pylist(),
        "predictions": ["virus" if s >= 0.5 else "others" for s in scores[:, 1]],
        "pair_read_ids": read_ids,
        "chunk_ids": chunk_ids,
        "scores": scores,
        "chunk_length": 500,
        "threshold": THRESHOLD,
        "shards": 2,
        "provenance": {
            "esm2_embeddings": {
                "000": {
                    "model": "esm2_demo",
                    "model_sha256": "ab" * 32,
                    "embed_s": 1.5,
                    "model_load_s": 0.5,
                    "pairs": 7,
                    "distinct_sequences": 5,
                    "tokens": 300,
                    "device": "cpu",
                },
                "001": {
                    "model": "esm2_demo",
                    "model_sha256": "ab" * 32,
                    "embed_s": 0.5,
                    "model_load_s": 0.5,
                    "pairs": 4,
                    "distinct_sequences": 4,
                    "tokens": 100,
                    "device": "cpu",
                },
            },
            "predictions": {"000": {"classifier": "500_model", "classifier_sha256": "cd" * 32}},
        },
    }
    return report_files(**{**arguments, **changes})


def test_report_files_keep_the_originals_and_add_every_read_and_the_page():
    files, counts = report()
    pairs, _read_ids, _chunk_ids, scores = hand_made_pairs()
    pair_ids = pairs.column("pair_id").to_pylist()
    assert sorted(files) == [
        "per_read.parquet",
        "per_read.tsv",
        "per_read_scores.png",
        "prediction_results.txt",
        "prediction_results_highestscore.csv",
        "report.html",
    ]
    predictions = ["virus" if s >= 0.5 else "others" for s in scores[:, 1]]
    assert files["prediction_results.txt"].decode() == format_prediction_results(pair_ids, predictions, scores)
    assert files["prediction_results_highestscore.csv"].decode() == format_highest_scores(pair_ids, scores)
    parquet = pl.read_parquet(io.BytesIO(files["per_read.parquet"]))
    assert parquet.equals(pl.read_csv(io.BytesIO(files["per_read.tsv"]), separator="\t", schema=parquet.schema))
    assert parquet["read_id"].to_list() == [r[0] for r in READS]
    assert counts["reads"] == 6 and counts["virus_reads"] == 2

    page = files["report.html"].decode()
    assert "<title>VirNucPro report: pond</title>" in page
    assert re.search(r'id="count-reads">6<', page) and re.search(r'id="count-virus_reads">2<', page)
    assert "ab" * 32 in page and "cd" * 32 in page and "500_model" in page
    top = page[page.index('<table id="top-reads">') :]
    top = top[: top.index("</table>")]
    assert re.findall(r"<code>(\w+)</code>", top) == ["long", "edge", "below"]  # by score, unscored left out
    timings = page[page.index('<table id="timings">') :]
    total = re.search(r"<th>ESM-2</th><th>all \(2\)</th>(.*?)</tr>", timings).group(1)
    # over both shards: 11 pairs, 9 distinct sequences, 1 s loading, 2 s embedding 400 tokens
    assert re.findall(r'class="number">([^<]*)<', total) == ["11", "9", "1.000", "2.000", "400", "200.0"]


def test_the_page_escapes_user_data_and_loads_nothing_from_outside():
    hostile = '<script>alert("x")</script>&<img src=https://example.org/x>'
    table = pl.DataFrame(
        {
            "read_id": [hostile],
            "length": [150],
            "chunks": [1],
            "kept_frames": [6],
            "scored_chunks": [1],
            "virus_chunks": [1],
            "virus_chunk_share": [1.0],
            "max_virus_score": pl.Series([0.9], dtype=pl.Float32),
            "decision": ["virus"],
            "reason": pl.Series([None], dtype=pl.String),
        }
    )
    page = render_report(
        sample="s<1>",
        counts={"reads": 1},
        per_read=table,
        plot_png=plot_read_scores(table, 0.5),
        provenance={"dnabert_embeddings": {"000": {"model": "<b>model</b>", "model_sha256": '"><i>', "device": "cpu&gpu"}}},
        settings={"virus threshold": 0.5},
        versions={"dagster": "<1.13>"},
    )
    assert "<script" not in page and "<b>" not in page and "<i>" not in page and "https://" not in page.replace("https://example.org", "")
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&lt;img src=https://example.org/x&gt;" in page
    assert "&lt;b&gt;model&lt;/b&gt;" in page and "&quot;&gt;&lt;i&gt;" in page and "cpu&amp;gpu" in page
    assert "<title>VirNucPro report: s&lt;1&gt;</title>" in page and "&lt;1.13&gt;" in page
    # Self-contained: the one image is inline, nothing is linked or fetched.
    assert re.findall(r'src="([^"]{0,22})', page) == ["data:image/png;base64,"]
    assert not re.search(r"<(link|script|iframe|object)\b|url\(", page, re.IGNORECASE)


def test_plot_is_a_png_for_reads_and_for_none():
    _pairs, read_ids, chunk_ids, scores = hand_made_pairs()
    table = per_read_table([r[0] for r in READS], [len(r[1]) for r in READS], read_ids, chunk_ids, scores, chunk_length=500, threshold=0.5)
    for rows in (table, table.clear()):
        png = plot_read_scores(rows, 0.5)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(io.BytesIO(png)).shape[:2] == (450, 800)


def test_the_threshold_is_a_deployment_setting(monkeypatch):
    from virnucpro_assets.errors import ConfigurationError
    from virnucpro_assets.pipeline.resources import deployment_resources
    from virnucpro_assets.settings import Settings

    monkeypatch.delenv("VIRNUCPRO_VIRUS_THRESHOLD", raising=False)
    assert Settings.from_environment().virus_threshold == 0.5
    monkeypatch.setenv("VIRNUCPRO_VIRUS_THRESHOLD", "0.8")
    settings = Settings.from_environment()
    assert deployment_resources(settings)["report"].checked_virus_threshold() == 0.8
    for bad in ("1.2", "-0.1", "half", "nan"):
        monkeypatch.setenv("VIRNUCPRO_VIRUS_THRESHOLD", bad)
        with pytest.raises(ConfigurationError, match=f"VIRNUCPRO_VIRUS_THRESHOLD='{bad}': .* a number from 0 to 1"):
            Settings.from_environment()


def test_scores_are_written_as_str_of_a_numpy_float32_across_the_whole_range():
    rng = np.random.default_rng(7)
    every_kind = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    scores_like = rng.random(200_000, dtype=np.float32)
    edges = np.array([0.0, -0.0, 1.0, 1e-4, 0.99999994, 5e-8, math.inf, -math.inf, math.nan, 1e6, 1e16, 1.5e-45], np.float32)
    around_the_switches = np.concatenate(
        [np.arange(edge.view(np.uint32) - 3, edge.view(np.uint32) + 4, dtype=np.uint32).view(np.float32) for edge in edges[2:6]]
    )
    values = np.concatenate([every_kind, scores_like, edges, around_the_switches])
    assert float32_text(values).to_list() == [str(value) for value in values]


def test_prediction_results_are_the_originals_join_of_str():
    rng = np.random.default_rng(3)
    score2 = np.concatenate([rng.random(5000, dtype=np.float32), np.float32([0.0, 1.0, 3e-9, math.nan])])
    scores = np.column_stack([1 - score2, score2]).astype(np.float32)
    ids = [f"r{i}\"x'_chunk_{i % 3}F{i % 3 + 1}" for i in range(score2.size)]
    predictions = ["virus" if s >= 0.5 else "others" for s in score2]
    rows = ["\t".join(PREDICTION_RESULTS_HEADER)] + ["\t".join(map(str, (i, p, *s))) for i, p, s in zip(ids, predictions, scores)]
    expected = "\n".join(rows) + "\n"
    assert format_prediction_results(ids, predictions, scores) == expected
    assert format_prediction_results(pl.Series(ids), pl.Series(predictions), scores) == expected
