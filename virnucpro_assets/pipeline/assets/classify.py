"""From embeddings to decisions: merged features, classifier scores and the sample's report."""

import base64

import dagster as dg
import numpy as np
import polars as pl
import pyarrow as pa

from virnucpro_assets.pipeline.assets.embeddings import dnabert_embeddings, esm2_embeddings
from virnucpro_assets.pipeline.assets.ingest import sample_reads, translated_proteins
from virnucpro_assets.pipeline.automation import follows_upstream
from virnucpro_assets.pipeline.models import ModelsResource, classifier_version, default_models
from virnucpro_assets.pipeline.partitions import from_sample, sample_and_shard, sample_shard_partitions, samples_partitions, shard_keys
from virnucpro_assets.pipeline.resources import StoreResource, TranslationSettings
from virnucpro_assets.results.features import merge_features
from virnucpro_assets.results.report import format_highest_scores, format_prediction_results, per_read_rollup, plot_read_scores
from virnucpro_assets.sequences.sharding import file_positions
from virnucpro_assets.storage import (
    EMBEDDING_EXTENSION,
    atomic_path,
    load_embeddings,
    read_table,
    write_embeddings,
    write_table,
)

PREDICTION_COLUMNS = ["pair_id", "read_id", "chunk_id", "prediction", "score1", "score2"]


@dg.asset(
    partitions_def=sample_shard_partitions,
    automation_condition=follows_upstream,
    deps=[translated_proteins, dnabert_embeddings, esm2_embeddings],
    group_name="classification",
    kinds={EMBEDDING_EXTENSION},
    # The tensor store's format: a store written in another one shows these partitions as changed.
    code_version=f"store={EMBEDDING_EXTENSION}",
    description="Each pair's DNABERT-S and ESM-2 vectors side by side, [768 | 2560] = 3328 floats, joined by pair_id.",
)
def merged_features(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    sample, shard = sample_and_shard(context)
    pair_ids = read_table(store.store.upstream("translated_proteins", sample, shard, "parquet"), ["pair_id"]).column("pair_id")
    features = merge_features(
        pair_ids.combine_chunks(),
        load_embeddings(store.store.upstream("dnabert_embeddings", sample, shard, EMBEDDING_EXTENSION)),
        load_embeddings(store.store.upstream("esm2_embeddings", sample, shard, EMBEDDING_EXTENSION)),
    )
    path = store.store.shard_path("merged_features", sample, shard, EMBEDDING_EXTENSION)
    write_embeddings(path, pair_ids, features)
    return dg.MaterializeResult(metadata={"rows": len(pair_ids), "width": features.shape[1], "path": dg.MetadataValue.path(str(path))})


_configured = default_models()


@dg.asset(
    partitions_def=sample_shard_partitions,
    automation_condition=follows_upstream,
    deps=[merged_features, translated_proteins],
    group_name="classification",
    kinds={"pytorch", "parquet"},
    code_version=classifier_version(_configured.classifier),
    description=(
        "VirNucPro's classifier on each pair: score1 = P(others), score2 = P(virus), prediction = "
        "the larger (pair_id, read_id, chunk_id, prediction, score1, score2)."
    ),
)
def predictions(
    context: dg.AssetExecutionContext, store: StoreResource, models: ModelsResource, translation: TranslationSettings
) -> dg.MaterializeResult:
    from virnucpro_assets.models.classifier import load_classifier

    sample, shard = sample_and_shard(context)
    classifier = load_classifier(models.classifier_path(), translation.checked_chunk_length())
    pairs = read_table(store.store.upstream("translated_proteins", sample, shard, "parquet"), ["pair_id", "read_id", "chunk_id"])
    feature_ids, features = load_embeddings(store.store.upstream("merged_features", sample, shard, EMBEDDING_EXTENSION))
    if feature_ids.to_pylist() != pairs.column("pair_id").to_pylist():
        raise dg.Failure(f"merged_features of {sample}|{shard} do not match translated_proteins: re-materialize merged_features")
    scores, decisions = classifier.score(features)
    table = pairs.append_column("prediction", pa.array(decisions, pa.string())).append_column(
        "score1", pa.array(scores[:, 0])
    ).append_column("score2", pa.array(scores[:, 1]))
    path = store.store.shard_path("predictions", sample, shard, "parquet")
    write_table(table.select(PREDICTION_COLUMNS), path)
    return dg.MaterializeResult(
        metadata={
            "pairs": table.num_rows,
            "virus_pairs": int(sum(d == "virus" for d in decisions)),
            "classifier": classifier.identity.name,
            "classifier_sha256": classifier.identity.content_hash,
            "path": dg.MetadataValue.path(str(path)),
        }
    )


@dg.asset(
    partitions_def=samples_partitions,
    automation_condition=follows_upstream,
    deps=[sample_reads, dg.AssetDep(predictions, partition_mapping=from_sample)],
    group_name="classification",
    kinds={"parquet", "csv"},
    description=(
        "The sample's results over all shards, reads in file order: the original's "
        "prediction_results.txt and prediction_results_highestscore.csv, a per-read roll-up "
        "(per_read.parquet) and a histogram of per-read virus scores (per_read_scores.png)."
    ),
)
def sample_report(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    sample = context.partition_key
    pairs = pl.concat(
        [_shard_in_file_order(store, sample, index, shard) for index, shard in enumerate(shard_keys)]
    ).sort("file_position", "row", maintain_order=True)
    ids = pairs["pair_id"].to_list()
    scores = np.column_stack([pairs["score1"].to_numpy(), pairs["score2"].to_numpy()]).astype(np.float32)
    directory = store.store.sample_dir("sample_report", sample)
    files = {
        "prediction_results.txt": format_prediction_results(ids, pairs["prediction"].to_list(), scores),
        "prediction_results_highestscore.csv": format_highest_scores(ids, scores),
    }
    for name, text in files.items():
        with atomic_path(directory / name) as temporary:
            temporary.write_text(text)
    rollup = per_read_rollup(pairs["read_id"].to_list(), pairs["chunk_id"].to_list(), scores)
    write_table(rollup.to_arrow(), directory / "per_read.parquet")
    plot = directory / "per_read_scores.png"
    plot_read_scores(rollup, plot)
    return dg.MaterializeResult(
        metadata={
            "pairs": len(ids),
            "virus_pairs": int((pairs["prediction"] == "virus").sum()),
            "chunks": int(rollup["scored_chunks"].sum()),
            "virus_chunks": int(rollup["virus_chunks"].sum()),
            "reads_scored": rollup.height,
            "reads_with_a_virus_chunk": int((rollup["virus_chunks"] > 0).sum()),
            "directory": dg.MetadataValue.path(str(directory)),
            "per_read_scores": dg.MetadataValue.md(
                f"![per-read scores](data:image/png;base64,{base64.b64encode(plot.read_bytes()).decode()})"
            ),
        }
    )


def _shard_in_file_order(store: StoreResource, sample: str, index: int, shard: str) -> pl.DataFrame:
    """One shard's predictions with each pair's read position in the input file."""
    reads = read_table(store.store.upstream("sample_reads", sample, shard, "parquet"), ["read_id"])
    positions = pl.DataFrame({"read_id": reads.column("read_id"), "file_position": file_positions(index, reads.num_rows, len(shard_keys))})
    predicted = pl.from_arrow(read_table(store.store.upstream("predictions", sample, shard, "parquet"))).with_row_index("row")
    return predicted.join(positions.with_columns(pl.col("read_id").cast(pl.String)), on="read_id", how="left", maintain_order="left")
