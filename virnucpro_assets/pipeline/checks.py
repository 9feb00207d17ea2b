"""Asset checks, one evaluation per partition, run in the same run as the partition they check.

Each check re-reads the files its asset just wrote and counts what is wrong; it passes when every
count is zero, and the counts are its metadata in the UI. The shard-level checks are blocking: a
failed one stops the steps downstream of that asset in its run, and declarative automation
(virnucpro_assets.pipeline.automation) does not start anything downstream of it either.
"""

import warnings

import dagster as dg
import numpy as np
import polars as pl

from virnucpro_assets.pipeline.assets.classify import merged_features, predictions, sample_report
from virnucpro_assets.pipeline.assets.embeddings import dnabert_embeddings, esm2_embeddings
from virnucpro_assets.pipeline.assets.ingest import translated_proteins
from virnucpro_assets.pipeline.partitions import sample_and_shard, sample_shard_partitions, samples_partitions, shard_keys
from virnucpro_assets.pipeline.resources import StoreResource
from virnucpro_assets.storage import EMBEDDING_EXTENSION, load_embeddings, read_table

# Partitioned asset checks are a preview feature of Dagster 1.13; we rely on them knowingly.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)

FRAMES = ["F1", "F2", "F3", "R1", "R2", "R3"]
SCORE_SUM_TOLERANCE = 1e-5


def outcome(problems: dict[str, int], **facts) -> dg.AssetCheckResult:
    """Passed when every problem count is zero; counts and facts become the check's metadata."""
    found = [f"{count} {problem.replace('_', ' ')}" for problem, count in problems.items() if count]
    return dg.AssetCheckResult(
        passed=not found,
        description="; ".join(found) if found else None,
        metadata={**{problem: int(count) for problem, count in problems.items()}, **facts},
    )


def recorded_metadata(context: dg.AssetCheckExecutionContext, asset: dg.AssetsDefinition) -> dict:
    """The metadata of the checked partition's latest materialization."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset.key, asset_partitions=[context.partition_key]), limit=1
    ).records
    return {key: value.value for key, value in records[0].asset_materialization.metadata.items()} if records else {}


def shard_check(asset: dg.AssetsDefinition, description: str):
    return dg.asset_check(
        asset=asset, partitions_def=sample_shard_partitions, blocking=True, description=description
    )


@shard_check(translated_proteins, "Pair ids are unique, frames are F1..R3, and every protein is non-empty and stop-free.")
def proteins_are_well_formed(context: dg.AssetCheckExecutionContext, store: StoreResource) -> dg.AssetCheckResult:
    sample, shard = sample_and_shard(context)
    table = pl.read_parquet(store.store.upstream("translated_proteins", sample, shard, "parquet"))
    return outcome(
        {
            "duplicate_pair_ids": table.height - table["pair_id"].n_unique(),
            "unknown_frames": (~table["frame"].is_in(FRAMES)).sum(),
            "empty_proteins": (table["protein"].str.len_chars() == 0).sum(),
            "proteins_with_a_stop": table["protein"].str.contains("*", literal=True).sum(),
        },
        pairs=table.height,
    )


def embeddings_check(asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    name = asset.key.to_user_string()

    @shard_check(
        asset,
        "One vector per translated pair, in the same order, as wide as the model's dimension recorded "
        "in the materialization (768 for DNABERT-S, 2560 for ESM-2 3B), with no NaN or Inf.",
    )
    def one_finite_vector_per_pair(context: dg.AssetCheckExecutionContext, store: StoreResource) -> dg.AssetCheckResult:
        sample, shard = sample_and_shard(context)
        ids, vectors = load_embeddings(store.store.upstream(name, sample, shard, EMBEDDING_EXTENSION))
        expected_ids = read_table(store.store.upstream("translated_proteins", sample, shard, "parquet"), ["pair_id"]).column("pair_id")
        model_width = recorded_metadata(context, asset).get("width")
        return outcome(
            {
                "rows_not_matching_translated_pairs": _mismatches(ids.to_pylist(), expected_ids.to_pylist()),
                "width_differs_from_the_model": int(vectors.shape[1] != model_width),
                "non_finite_values": np.count_nonzero(~np.isfinite(vectors)),
            },
            rows=len(ids),
            width=vectors.shape[1],
        )

    return one_finite_vector_per_pair


@shard_check(merged_features, "Pair ids are those of both embeddings, and each row is their two vectors' width.")
def ids_match_both_embeddings(context: dg.AssetCheckExecutionContext, store: StoreResource) -> dg.AssetCheckResult:
    sample, shard = sample_and_shard(context)
    ids, features = load_embeddings(store.store.upstream("merged_features", sample, shard, EMBEDDING_EXTENSION))
    inputs = {asset: load_embeddings(store.store.upstream(asset, sample, shard, EMBEDDING_EXTENSION)) for asset in ("dnabert_embeddings", "esm2_embeddings")}
    problems = {f"rows_not_matching_{asset}": _mismatches(ids.to_pylist(), input_ids.to_pylist()) for asset, (input_ids, _) in inputs.items()}
    problems["width_differs_from_the_inputs"] = int(features.shape[1] != sum(v.shape[1] for _, v in inputs.values()))
    return outcome(problems, rows=len(ids), width=features.shape[1])


@shard_check(predictions, "score1 and score2 lie in [0, 1] and sum to 1 on every row (within 1e-5).")
def scores_are_probabilities(context: dg.AssetCheckExecutionContext, store: StoreResource) -> dg.AssetCheckResult:
    sample, shard = sample_and_shard(context)
    scores = pl.read_parquet(store.store.upstream("predictions", sample, shard, "parquet"), columns=["score1", "score2"]).to_numpy()
    return outcome(
        {
            "scores_outside_0_1": np.count_nonzero((scores < 0) | (scores > 1) | np.isnan(scores)),
            "rows_not_summing_to_1": np.count_nonzero(~(np.abs(scores.sum(axis=1) - 1) <= SCORE_SUM_TOLERANCE)),
        },
        rows=len(scores),
    )


@dg.asset_check(
    asset=sample_report,
    partitions_def=samples_partitions,
    description="The report's pair counts equal the sum over the sample's shards of predictions.",
)
def counts_add_up_over_shards(context: dg.AssetCheckExecutionContext, store: StoreResource) -> dg.AssetCheckResult:
    sample = context.partition_key
    shards = pl.concat(
        pl.read_parquet(store.store.upstream("predictions", sample, shard, "parquet"), columns=["prediction"]) for shard in shard_keys
    )
    virus_pairs = int((shards["prediction"] == "virus").sum())
    reported = recorded_metadata(context, sample_report)
    result_lines = (store.store.sample_dir("sample_report", sample) / "prediction_results.txt").read_text().count("\n") - 1
    return outcome(
        {
            "pair_count_differs": int(reported.get("pairs") != shards.height),
            "virus_pair_count_differs": int(reported.get("virus_pairs") != virus_pairs),
            "result_lines_differing": abs(result_lines - shards.height),
        },
        pairs_over_shards=shards.height,
        virus_pairs_over_shards=virus_pairs,
    )


def _mismatches(ids: list[str], expected: list[str]) -> int:
    """How many rows differ from the expected ids, position by position (a length difference counts)."""
    return sum(a != b for a, b in zip(ids, expected)) + abs(len(ids) - len(expected))


asset_checks = [
    proteins_are_well_formed,
    embeddings_check(dnabert_embeddings),
    embeddings_check(esm2_embeddings),
    ids_match_both_embeddings,
    scores_are_probabilities,
    counts_add_up_over_shards,
]
