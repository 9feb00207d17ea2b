"""From embeddings to decisions: merged features, classifier scores and the sample's report."""

import base64

import dagster as dg
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from virnucpro_assets.pipeline.automation import follows_upstream
from virnucpro_assets.pipeline.models import ModelsResource, classifier_version
from virnucpro_assets.pipeline.partitions import Partitions, by_sample
from virnucpro_assets.pipeline.resources import ReportSettings, TranslationSettings
from virnucpro_assets.results.features import merge_features
from virnucpro_assets.results.html_report import MODEL_STEPS, PROVENANCE_KEYS
from virnucpro_assets.results.report import report_files
from virnucpro_assets.settings import Settings
from virnucpro_assets.storage import EMBEDDING_EXTENSION, EmbeddingTable

PREDICTION_COLUMNS = ["pair_id", "read_id", "chunk_id", "prediction", "score1", "score2"]


def merged_features_asset(
    partitions_def: dg.MultiPartitionsDefinition, prefix: str = "", pairs: str = "translated_proteins", group_name: str = "classification"
) -> dg.AssetsDefinition:
    """`<prefix>merged_features`: the `pairs` asset's pairs with their two `<prefix>` embeddings."""

    @dg.asset(
        name=f"{prefix}merged_features",
        partitions_def=partitions_def,
        ins={
            "translated_proteins": dg.AssetIn(key=pairs, metadata={"columns": ["pair_id"]}),
            "dnabert_embeddings": dg.AssetIn(key=f"{prefix}dnabert_embeddings"),
            "esm2_embeddings": dg.AssetIn(key=f"{prefix}esm2_embeddings"),
        },
        io_manager_key="tensor_io_manager",
        automation_condition=follows_upstream,
        group_name=group_name,
        kinds={EMBEDDING_EXTENSION},
        # The tensor store's format: a store written in another one shows these partitions as changed.
        code_version=f"store={EMBEDDING_EXTENSION}",
        description="Each pair's DNABERT-S and ESM-2 vectors side by side, [768 | 2560] = 3328 floats, joined by pair_id.",
    )
    def merged_features(
        translated_proteins: pa.Table, dnabert_embeddings: EmbeddingTable, esm2_embeddings: EmbeddingTable
    ) -> EmbeddingTable:
        pair_ids = translated_proteins.column("pair_id").combine_chunks()
        return EmbeddingTable(pair_ids, merge_features(pair_ids, dnabert_embeddings, esm2_embeddings))

    return merged_features


def classification_assets(partitions: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    merged_features = merged_features_asset(partitions.sample_shard)

    @dg.asset(
        partitions_def=partitions.sample_shard,
        ins={"translated_proteins": dg.AssetIn(metadata={"columns": ["pair_id", "read_id", "chunk_id"]})},
        io_manager_key="table_io_manager",
        automation_condition=follows_upstream,
        group_name="classification",
        kinds={"pytorch", "parquet"},
        code_version=classifier_version(settings.classifier),
        description=(
            "VirNucPro's classifier on each pair: score1 = P(others), score2 = P(virus), prediction = "
            "the larger (pair_id, read_id, chunk_id, prediction, score1, score2)."
        ),
    )
    def predictions(
        context: dg.AssetExecutionContext,
        translated_proteins: pa.Table,
        merged_features: EmbeddingTable,
        models: ModelsResource,
        translation: TranslationSettings,
    ) -> dg.Output[pa.Table]:
        from virnucpro_assets.models.classifier import load_classifier

        classifier = load_classifier(models.classifier_path(), translation.checked_chunk_length())
        if merged_features.pair_ids.to_pylist() != translated_proteins.column("pair_id").to_pylist():
            raise dg.Failure(f"merged_features of {context.partition_key} do not match translated_proteins: re-materialize merged_features")
        scores, decisions = classifier.score(merged_features.vectors)
        table = (
            translated_proteins.append_column("prediction", pa.array(decisions, pa.string()))
            .append_column("score1", pa.array(scores[:, 0]))
            .append_column("score2", pa.array(scores[:, 1]))
        )
        return dg.Output(
            table.select(PREDICTION_COLUMNS),
            metadata={
                "pairs": table.num_rows,
                "virus_pairs": int(sum(d == "virus" for d in decisions)),
                "classifier": classifier.identity.name,
                "classifier_sha256": classifier.identity.content_hash,
            },
        )

    @dg.asset(
        partitions_def=partitions.samples,
        ins={
            "sample_reads": dg.AssetIn(metadata={"columns": ["read_id", "sequence", "file_position"]}),
            "predictions": dg.AssetIn(partition_mapping=by_sample),
        },
        io_manager_key="report_io_manager",
        automation_condition=follows_upstream,
        group_name="classification",
        kinds={"parquet", "csv", "html"},
        description=(
            "The sample's results over all shards, reads in file order: the original's "
            "prediction_results.txt and prediction_results_highestscore.csv; every read with its chunks, "
            "kept frames, scores and a decision at the report's virus threshold (per_read.tsv, "
            "per_read.parquet); a histogram of per-read virus scores (per_read_scores.png); and a "
            "self-contained page with counts, top reads, models, versions, settings and timings (report.html)."
        ),
    )
    def sample_report(
        context: dg.AssetExecutionContext,
        sample_reads: dict[str, pa.Table],
        predictions: dict[str, pa.Table],
        translation: TranslationSettings,
        report: ReportSettings,
    ) -> dg.Output[dict[str, bytes]]:
        shards = len(partitions.shard_keys)
        threshold = report.checked_virus_threshold()
        reads = pl.concat([_read_lengths(sample_reads[shard]) for shard in partitions.shard_keys]).sort("file_position")
        pairs = pl.concat([_in_file_order(sample_reads[shard], predictions[shard]) for shard in partitions.shard_keys]).sort(
            "file_position", "row", maintain_order=True
        )
        scores = np.column_stack([pairs["score1"].to_numpy(), pairs["score2"].to_numpy()]).astype(np.float32)
        files, counts = report_files(
            sample=context.partition_key,
            read_ids=reads["read_id"],
            lengths=reads["length"].to_numpy(),
            pair_ids=pairs["pair_id"],
            predictions=pairs["prediction"],
            pair_read_ids=pairs["read_id"],
            chunk_ids=pairs["chunk_id"],
            scores=scores,
            chunk_length=translation.checked_chunk_length(),
            threshold=threshold,
            shards=shards,
            provenance=_shard_provenance(context.instance, partitions.shard_partitions(context.partition_key)),
        )
        return dg.Output(
            files,
            metadata={
                **counts,
                "virus_threshold": threshold,
                "per_read_scores": dg.MetadataValue.md(
                    f"![per-read scores](data:image/png;base64,{base64.b64encode(files['per_read_scores.png']).decode()})"
                ),
            },
        )

    return [merged_features, predictions, sample_report]


def _read_lengths(reads: pa.Table) -> pl.DataFrame:
    """One shard's read ids, lengths and positions in the input file; the sequences are not kept."""
    return pl.DataFrame(
        {
            "read_id": pl.from_arrow(reads.column("read_id")),
            "length": pl.from_arrow(pc.binary_length(reads.column("sequence"))).cast(pl.Int64),
            "file_position": pl.from_arrow(reads.column("file_position")),
        }
    )


def _shard_provenance(instance: dg.DagsterInstance, shard_partitions: list[dg.MultiPartitionKey]) -> dict[str, dict[str, dict]]:
    """What the latest materialization of each shard step with a model recorded (PROVENANCE_KEYS):
    {asset: {shard: {key: value}}}."""
    provenance: dict[str, dict[str, dict]] = {}
    for asset, *_ in MODEL_STEPS:
        for partition in shard_partitions:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[str(partition)]), limit=1
            ).records
            if records:
                recorded = records[0].asset_materialization.metadata
                provenance.setdefault(asset, {})[partition.keys_by_dimension["shard"]] = {
                    key: recorded[key].value for key in PROVENANCE_KEYS if key in recorded
                }
    return provenance


def _in_file_order(reads: pa.Table, predicted: pa.Table) -> pl.DataFrame:
    """One shard's predictions with each pair's read position in the input file."""
    positions = pl.DataFrame({"read_id": reads.column("read_id"), "file_position": reads.column("file_position")})
    return (
        pl.from_arrow(predicted)
        .with_row_index("row")
        .join(positions.with_columns(pl.col("read_id").cast(pl.String)), on="read_id", how="left", maintain_order="left")
    )
