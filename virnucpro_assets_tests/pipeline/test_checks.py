"""Each asset check passes on the real pipeline's output and catches the corruption it is for; the
blocking ones stop the steps after them in the same run."""

import numpy as np
import pyarrow as pa
import pytest

from virnucpro_assets.models.classifier import Classifier
from virnucpro_assets.pipeline import io_managers
from virnucpro_assets.pipeline.assets import classify, ingest
from virnucpro_assets.results import report
from virnucpro_assets.storage import EmbeddingTable
from virnucpro_assets_tests.pipeline.conftest import SHARD_ASSETS


@pytest.fixture
def sample(pipeline, genome_reads):
    name = pipeline.register([r for r in genome_reads if len(r[1]) >= 300][:12], "checked")
    pipeline.materialize(["sample_reads"], name)
    return name


def evaluations(result) -> dict[str, tuple[bool, dict]]:
    """check name -> (passed, metadata values) of a run's check evaluations."""
    return {
        e.asset_check_key.to_user_string(): (e.passed, {k: v.value for k, v in e.metadata.items()})
        for e in result.get_asset_check_evaluations()
    }


def test_every_check_passes_on_a_whole_sample(pipeline, sample):
    results = [pipeline.materialize(SHARD_ASSETS, partition) for partition in pipeline.shard_partitions(sample)]
    results.append(pipeline.materialize(["sample_report"], sample))
    checked = [(name, passed) for result in results for name, (passed, _) in evaluations(result).items()]
    assert len(checked) == 5 * len(pipeline.shard_partitions(sample)) + 1
    assert all(passed for _, passed in checked), checked
    report = evaluations(results[-1])["sample_report:counts_add_up_over_shards"][1]
    assert report["pairs_over_shards"] == results[-1].asset_materializations_for_node("sample_report")[0].metadata["pairs"].value > 0


def test_bad_proteins_fail_their_blocking_check_and_stop_the_embeddings(pipeline, sample, monkeypatch):
    translate = ingest.translate_reads

    def with_bad_rows(*args):
        table = translate(*args)
        bad = table.slice(0, 1).to_pylist()[0]
        rows = [dict(bad, frame="F4"), dict(bad, protein=""), dict(bad, protein="MK*L")]
        return pa.concat_tables([table, pa.Table.from_pylist(rows, schema=table.schema)])

    monkeypatch.setattr(ingest, "translate_reads", with_bad_rows)
    partition = pipeline.shard_partitions(sample)[0]
    result = pipeline.materialize(["translated_proteins", "dnabert_tokens", "dnabert_embeddings"], partition, raise_on_error=False)
    passed, problems = evaluations(result)["translated_proteins:proteins_are_well_formed"]
    assert not passed
    assert problems["duplicate_pair_ids"] == 3 and problems["unknown_frames"] == 1
    assert problems["empty_proteins"] == 1 and problems["proteins_with_a_stop"] == 1
    assert result.asset_materializations_for_node("dnabert_embeddings") == []


def test_embeddings_missing_a_row_too_wide_or_not_finite_fail(pipeline, sample, monkeypatch):
    write = io_managers.write_embeddings

    def corrupted(path, table):
        vectors = np.hstack([table.vectors, np.zeros((len(table.vectors), 1), np.float32)])[:-1]
        vectors[0, 0] = np.nan
        write(path, EmbeddingTable(table.pair_ids[:-1], vectors))

    monkeypatch.setattr(io_managers, "write_embeddings", corrupted)
    partition = pipeline.shard_partitions(sample)[0]
    result = pipeline.materialize(["translated_proteins", "esm2_embeddings"], partition, raise_on_error=False)
    passed, problems = evaluations(result)["esm2_embeddings:one_finite_vector_per_pair"]
    assert not passed
    assert problems["rows_not_matching_translated_pairs"] == 1
    assert problems["width_differs_from_the_model"] == 1 and problems["non_finite_values"] == 1


def test_merged_features_with_shifted_ids_fail(pipeline, sample, monkeypatch):
    shifted = lambda ids, features: EmbeddingTable(ids.take(np.roll(np.arange(len(ids)), 1)), features)  # noqa: E731
    monkeypatch.setattr(classify, "EmbeddingTable", shifted)
    partition = pipeline.shard_partitions(sample)[0]
    result = pipeline.materialize(SHARD_ASSETS[: SHARD_ASSETS.index("merged_features") + 1], partition, raise_on_error=False)
    passed, problems = evaluations(result)["merged_features:ids_match_both_embeddings"]
    assert not passed and problems["rows_not_matching_dnabert_embeddings"] == problems["rows"] > 1


def test_scores_that_are_not_probabilities_fail(pipeline, sample, monkeypatch):
    score = Classifier.score
    monkeypatch.setattr(Classifier, "score", lambda self, features: (score(self, features)[0] * 2, score(self, features)[1]))
    partition = pipeline.shard_partitions(sample)[0]
    result = pipeline.materialize(SHARD_ASSETS, partition, raise_on_error=False)
    passed, problems = evaluations(result)["predictions:scores_are_probabilities"]
    assert not passed and problems["rows_not_summing_to_1"] == problems["rows"] > 0


def test_a_report_that_lost_a_line_fails(pipeline, sample, monkeypatch):
    for partition in pipeline.shard_partitions(sample):
        pipeline.materialize(SHARD_ASSETS, partition)
    format_results = report.format_prediction_results

    def without_the_first_pair(*args):
        header, _, rest = format_results(*args).split("\n", 2)
        return f"{header}\n{rest}"

    monkeypatch.setattr(report, "format_prediction_results", without_the_first_pair)
    passed, problems = evaluations(pipeline.materialize(["sample_report"], sample))["sample_report:counts_add_up_over_shards"]
    assert not passed and problems["result_lines_differing"] == 1 and problems["pair_count_differs"] == 0
