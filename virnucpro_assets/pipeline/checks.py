"""Asset checks, one evaluation per partition, run in the same run as the partition they check.

Each check receives what its asset just stored (through the IO managers, digests verified) and
counts what is wrong; it passes when every count is zero, and the counts are its metadata in the
UI. The shard-level checks are blocking: a failed one stops the steps downstream of that asset in
its run, declarative automation (virnucpro_assets.pipeline.automation) does not start anything
downstream of it either, and the checked file is withdrawn from the store (kept under a hidden
name), so that no later step and no reader of the store takes it for good data.
"""

import warnings

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from virnucpro_assets.pipeline.partitions import Partitions, by_sample
from virnucpro_assets.pipeline.resources import StoreResource
from virnucpro_assets.storage import EMBEDDING_EXTENSION, TABLE_EXTENSION, EmbeddingTable

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


def recorded_metadata(context: dg.AssetCheckExecutionContext, asset: str) -> dict:
    """The metadata of the checked partition's latest materialization."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[context.partition_key]), limit=1
    ).records
    return {key: value.value for key, value in records[0].asset_materialization.metadata.items()} if records else {}


def _mismatches(ids: list[str], expected: list[str]) -> int:
    """How many rows differ from the expected ids, position by position (a length difference counts)."""
    return sum(a != b for a, b in zip(ids, expected)) + abs(len(ids) - len(expected))


def withdrawn_on_failure(
    result: dg.AssetCheckResult, context: dg.AssetCheckExecutionContext, store: StoreResource, extension: str
) -> dg.AssetCheckResult:
    """A blocking check's result; when it failed, the checked shard file is withdrawn first."""
    if not result.passed:
        asset = context.check_specs[0].asset_key.to_user_string()
        store.withdraw(asset, context.partition_key, extension)
        context.log.error(f"{asset} [{context.partition_key}] failed its check ({result.description}) and was withdrawn from the store")
    return result


def asset_checks(partitions: Partitions) -> list[dg.AssetChecksDefinition]:
    def shard_check(asset: str, description: str, **additional_ins: dg.AssetIn):
        return dg.asset_check(
            asset=asset, partitions_def=partitions.sample_shard, blocking=True, description=description, additional_ins=additional_ins
        )

    @shard_check("translated_proteins", "Pair ids are unique, frames are F1..R3, and every protein is non-empty and stop-free.")
    def proteins_are_well_formed(
        context: dg.AssetCheckExecutionContext, translated_proteins: pa.Table, store: StoreResource
    ) -> dg.AssetCheckResult:
        table = translated_proteins
        result = outcome(
            {
                "duplicate_pair_ids": table.num_rows - pc.count_distinct(table.column("pair_id")).as_py(),
                "unknown_frames": _count(pc.invert(pc.is_in(table.column("frame"), pa.array(FRAMES)))),
                "empty_proteins": _count(pc.equal(pc.utf8_length(table.column("protein")), 0)),
                "proteins_with_a_stop": _count(pc.match_substring(table.column("protein"), "*")),
            },
            pairs=table.num_rows,
        )
        return withdrawn_on_failure(result, context, store, TABLE_EXTENSION)

    vectors_description = (
        "One vector per translated pair, in the same order, as wide as the model's dimension recorded "
        "in the materialization (768 for DNABERT-S, 2560 for ESM-2 3B), with no NaN or Inf."
    )
    pair_ids = dg.AssetIn("translated_proteins", metadata={"columns": ["pair_id"]})

    def vectors_result(context, asset: str, embeddings: EmbeddingTable, translated_proteins: pa.Table, store) -> dg.AssetCheckResult:
        result = outcome(
            {
                "rows_not_matching_translated_pairs": _mismatches(
                    embeddings.pair_ids.to_pylist(), translated_proteins.column("pair_id").to_pylist()
                ),
                "width_differs_from_the_model": int(embeddings.width != recorded_metadata(context, asset).get("model_width")),
                "non_finite_values": np.count_nonzero(~np.isfinite(embeddings.vectors)),
            },
            rows=len(embeddings.pair_ids),
            width=embeddings.width,
        )
        return withdrawn_on_failure(result, context, store, EMBEDDING_EXTENSION)

    # Two checks of one name, one per embedding asset: a check receives its asset as the
    # parameter of the asset's name.
    @shard_check("dnabert_embeddings", vectors_description, translated_proteins=pair_ids)
    def one_finite_vector_per_pair(
        context: dg.AssetCheckExecutionContext, dnabert_embeddings: EmbeddingTable, translated_proteins: pa.Table, store: StoreResource
    ) -> dg.AssetCheckResult:
        return vectors_result(context, "dnabert_embeddings", dnabert_embeddings, translated_proteins, store)

    dnabert_vectors_check = one_finite_vector_per_pair

    @shard_check("esm2_embeddings", vectors_description, translated_proteins=pair_ids)
    def one_finite_vector_per_pair(  # noqa: F811
        context: dg.AssetCheckExecutionContext, esm2_embeddings: EmbeddingTable, translated_proteins: pa.Table, store: StoreResource
    ) -> dg.AssetCheckResult:
        return vectors_result(context, "esm2_embeddings", esm2_embeddings, translated_proteins, store)

    esm2_vectors_check = one_finite_vector_per_pair

    @shard_check(
        "merged_features",
        "Pair ids are those of both embeddings, and each row is their two vectors' width.",
        dnabert_embeddings=dg.AssetIn("dnabert_embeddings"),
        esm2_embeddings=dg.AssetIn("esm2_embeddings"),
    )
    def ids_match_both_embeddings(
        context: dg.AssetCheckExecutionContext,
        merged_features: EmbeddingTable,
        dnabert_embeddings: EmbeddingTable,
        esm2_embeddings: EmbeddingTable,
        store: StoreResource,
    ) -> dg.AssetCheckResult:
        ids = merged_features.pair_ids.to_pylist()
        inputs = {"dnabert_embeddings": dnabert_embeddings, "esm2_embeddings": esm2_embeddings}
        problems = {f"rows_not_matching_{name}": _mismatches(ids, table.pair_ids.to_pylist()) for name, table in inputs.items()}
        problems["width_differs_from_the_inputs"] = int(merged_features.width != sum(table.width for table in inputs.values()))
        result = outcome(problems, rows=len(ids), width=merged_features.width)
        return withdrawn_on_failure(result, context, store, EMBEDDING_EXTENSION)

    @shard_check(
        "predictions",
        "score1 and score2 lie in [0, 1] and sum to 1 on every row (within 1e-5).",
    )
    def scores_are_probabilities(
        context: dg.AssetCheckExecutionContext, predictions: pa.Table, store: StoreResource
    ) -> dg.AssetCheckResult:
        scores = np.column_stack([predictions.column("score1").to_numpy(), predictions.column("score2").to_numpy()]).reshape(-1, 2)
        result = outcome(
            {
                "scores_outside_0_1": np.count_nonzero((scores < 0) | (scores > 1) | np.isnan(scores)),
                "rows_not_summing_to_1": np.count_nonzero(~(np.abs(scores.sum(axis=1) - 1) <= SCORE_SUM_TOLERANCE)),
            },
            rows=len(scores),
        )
        return withdrawn_on_failure(result, context, store, TABLE_EXTENSION)

    @dg.asset_check(
        asset="sample_report",
        partitions_def=partitions.samples,
        description="The report's pair counts equal the sum over the sample's shards of predictions.",
        additional_ins={"predictions": dg.AssetIn("predictions", partition_mapping=by_sample, metadata={"columns": ["prediction"]})},
    )
    def counts_add_up_over_shards(
        context: dg.AssetCheckExecutionContext, sample_report: dict[str, bytes], predictions: dict[str, pa.Table]
    ) -> dg.AssetCheckResult:
        pairs = sum(table.num_rows for table in predictions.values())
        virus_pairs = sum(_count(pc.equal(table.column("prediction"), "virus")) for table in predictions.values())
        reported = recorded_metadata(context, "sample_report")
        result_lines = sample_report["prediction_results.txt"].count(b"\n") - 1
        return outcome(
            {
                "pair_count_differs": int(reported.get("pairs") != pairs),
                "virus_pair_count_differs": int(reported.get("virus_pairs") != virus_pairs),
                "result_lines_differing": abs(result_lines - pairs),
            },
            pairs_over_shards=pairs,
            virus_pairs_over_shards=virus_pairs,
        )

    return [
        proteins_are_well_formed,
        dnabert_vectors_check,
        esm2_vectors_check,
        ids_match_both_embeddings,
        scores_are_probabilities,
        counts_add_up_over_shards,
    ]


def _count(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)
