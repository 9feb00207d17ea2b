"""Training the classifier: GenBank genomes -> training pairs -> the same embedding and merged-feature
steps as samples -> a classifier trained with train.py's recipe, and a check of its test AUROC."""

import base64
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from virnucpro_assets.errors import ConfigurationError
from virnucpro_assets.models.identity import hash_files
from virnucpro_assets.pipeline.assets.classify import merged_features_asset
from virnucpro_assets.pipeline.assets.embeddings import embedding_assets
from virnucpro_assets.pipeline.automation import follows_upstream
from virnucpro_assets.pipeline.checks import recorded_metadata
from virnucpro_assets.pipeline.executors import GPU_STEP_TAGS
from virnucpro_assets.pipeline.gpu import GPU_POOL, GpuResource
from virnucpro_assets.pipeline.partitions import Partitions, by_training_set, sample_and_shard
from virnucpro_assets.pipeline.resources import StoreResource
from virnucpro_assets.settings import Settings
from virnucpro_assets.storage import EmbeddingTable
from virnucpro_assets.training.frames import labelled, training_frames
from virnucpro_assets.training.genbank import read_genbank
from virnucpro_assets.training.metrics import confusion_matrix
from virnucpro_assets.training.plots import confusion_plot, epochs_plot, roc_plot
from virnucpro_assets.training.registry import TrainingRegistry, parse_training_partition
from virnucpro_assets.training.sampling import ORIGINAL_BLOCK_SIZE, sample_classes

if TYPE_CHECKING:
    from virnucpro_assets.training.trainer import TrainingConfig

PREFIX = "training_"
CLASSIFIER_FILE = "classifier.safetensors"
PAIR_COLUMNS = ["pair_id", "read_id", "label", "source", "group", "record_number", "row"]


class TrainingSettings(dg.ConfigurableResource):
    """block_size: pairs per block in features_extract.py's class sampling (10,000 there).
    min_test_auroc: the floor of the classifier's check."""

    block_size: int = ORIGINAL_BLOCK_SIZE
    min_test_auroc: float = 0.9


class ClassifierTraining(dg.Config):
    """Per run: the split (`pairs`, train.py's, or `genome`, where no genome is on both sides),
    the epoch limit, whether to keep the best epoch rather than train.py's last one, and the seed
    of torch's generator (train.py never seeds it)."""

    split: str = "pairs"
    max_epochs: int = 200
    restore_best: bool = False
    torch_seed: int = 0


def training_assets(partitions: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    shards = len(partitions.shard_keys)

    @dg.asset(
        partitions_def=partitions.training_shard,
        io_manager_key="table_io_manager",
        automation_condition=follows_upstream,
        group_name="training",
        kinds={"parquet"},
        description=(
            "The training set's GenBank records (record i of the set on shard i mod K) chunked as in "
            "prediction; chunks with an ambiguity letter dropped; a stop-free frame kept only if its protein "
            "is part of one of the record's CDS translations (make_train_dataset_*.py). Columns of "
            "translated_proteins plus label (1 viral), source file, group, record_number and row."
        ),
    )
    def training_pairs(context: dg.AssetExecutionContext, store: StoreResource) -> dg.Output[pa.Table]:
        set_key, shard = sample_and_shard(context.partition_key)
        training_set, chunk_length = parse_training_partition(set_key)
        shard_number = partitions.shard_keys.index(shard)
        registry = TrainingRegistry(Path(store.registry_root or store.root))
        tables, seen, number = [], {}, 0
        ambiguous = chunks = 0
        for entry in registry.files(training_set):
            records = read_genbank(registry.source_file(entry))
            mine, numbers = [], {}
            for record in records:
                if record.record_id in seen:
                    raise ConfigurationError(
                        f"record {record.record_id} is in both {seen[record.record_id]} and {entry.path} of training set "
                        f"{training_set!r}: pair ids would repeat; keep each record in one file"
                    )
                seen[record.record_id] = entry.path
                if number % shards == shard_number:
                    mine.append(record)
                    numbers[record.record_id] = number
                number += 1
            table, counts = training_frames(mine, chunk_length)
            ambiguous += counts.ambiguous_chunks
            chunks += counts.chunks
            tables.append(labelled(table, entry.label_value, entry.name, entry.group, numbers))
        pairs = pa.concat_tables(tables)
        return dg.Output(
            pairs,
            metadata={
                "pairs": pairs.num_rows,
                "viral_pairs": int(pc.sum(pairs.column("label")).as_py() or 0),
                "chunks": chunks,
                "ambiguous_chunks_dropped": ambiguous,
                "chunk_length": chunk_length,
            },
        )

    @dg.asset(
        partitions_def=partitions.training_sets,
        ins={
            "training_pairs": dg.AssetIn(partition_mapping=by_training_set, metadata={"columns": PAIR_COLUMNS}),
            "features": dg.AssetIn(key=f"{PREFIX}merged_features", partition_mapping=by_training_set),
        },
        io_manager_key="report_io_manager",
        automation_condition=follows_upstream,
        pool=GPU_POOL,
        op_tags=GPU_STEP_TAGS,
        group_name="training",
        kinds={"pytorch", "safetensors"},
        description=(
            "VirNucPro's MLP trained with train.py's recipe on the set's merged features, classes sampled as "
            "features_extract.py does: classifier.safetensors + classifier.json (the native format; set "
            "VIRNUCPRO_CLASSIFIER=trained:<partition> to predict with it), metrics.json, and plots of the "
            "epochs, the confusion matrix and the ROC curve."
        ),
    )
    def classifier(
        context: dg.AssetExecutionContext,
        config: ClassifierTraining,
        training_pairs: dict[str, pa.Table],
        features: dict[str, EmbeddingTable],
        gpu: GpuResource,
        training: TrainingSettings,
    ) -> dg.Output[dict[str, bytes]]:
        _, chunk_length = parse_training_partition(context.partition_key)
        pairs = pa.concat_tables([training_pairs[shard] for shard in partitions.shard_keys])
        for shard in partitions.shard_keys:
            if features[shard].pair_ids.to_pylist() != training_pairs[shard].column("pair_id").to_pylist():
                raise dg.Failure(
                    f"{PREFIX}merged_features of {context.partition_key}|{shard} do not match training_pairs: re-materialize it"
                )
        vectors = np.concatenate([np.asarray(features[shard].vectors) for shard in partitions.shard_keys])
        order = np.lexsort((pairs.column("row").to_numpy(), pairs.column("record_number").to_numpy()))
        column = {name: pairs.column(name).to_numpy(zero_copy_only=False)[order] for name in ("label", "source", "group", "read_id")}
        sampled = sample_classes(column["label"], column["source"], column["group"], block_size=training.block_size)
        if not sampled.viral_blocks or not sampled.other_blocks:
            raise dg.Failure(
                f"training set {context.partition_key}: {sampled.viral_blocks} viral and {sampled.other_blocks} other blocks of "
                f"{training.block_size:,} pairs: both classes need at least one full block (add genomes, or lower the block size)"
            )
        rows = order[sampled.rows]
        labels = column["label"][sampled.rows].astype(np.int64)
        genomes = np.char.add(np.char.add(column["source"][sampled.rows].astype(str), "/"), column["read_id"][sampled.rows].astype(str))
        from virnucpro_assets.training.trainer import TrainingConfig, train

        recipe = TrainingConfig(
            split=config.split, max_epochs=config.max_epochs, restore_best=config.restore_best, torch_seed=config.torch_seed
        )
        with gpu.lease(context) as device:
            result = train(
                vectors[rows],
                labels,
                recipe,
                genomes=genomes,
                device=device.torch_device,
                on_epoch=lambda e: context.log.info(
                    f"epoch {e.epoch}: train loss {e.train_loss:.4f}, test loss {e.test.loss:.4f}, AUROC {e.test.auroc:.4f}"
                ),
            )
        files = _classifier_files(result, chunk_length, context.partition_key, sampled, recipe)
        summary = result.summary()
        return dg.Output(
            files,
            metadata={
                **{key: (None if isinstance(value, float) and np.isnan(value) else value) for key, value in summary.items()},
                "viral_blocks": sampled.viral_blocks,
                "other_blocks": sampled.other_blocks,
                "other_blocks_by_group": dg.MetadataValue.json(sampled.blocks_by_group),
                "confusion_matrix": dg.MetadataValue.json(confusion_matrix(result.test_labels, result.test_scores)),
                "classifier_sha256": files["classifier.sha256"].decode().strip(),
                "device": device.name,
                "split": recipe.split,
                **{
                    f"{name}_plot": dg.MetadataValue.md(
                        f"![{name}](data:image/png;base64,{base64.b64encode(files[f'{name}.png']).decode()})"
                    )
                    for name in ("epochs", "confusion", "roc")
                },
            },
        )

    @dg.asset_check(
        asset=classifier,
        partitions_def=partitions.training_sets,
        description="The kept epoch's test AUROC is at least training.min_test_auroc.",
    )
    def test_auroc_above_floor(context: dg.AssetCheckExecutionContext, training: TrainingSettings) -> dg.AssetCheckResult:
        recorded = recorded_metadata(context, "classifier")
        value = recorded.get("test_auroc")
        return dg.AssetCheckResult(
            passed=value is not None and value >= training.min_test_auroc,
            metadata={"test_auroc": value, "floor": training.min_test_auroc, "kept_epoch": recorded.get("kept_epoch")},
        )

    return [
        training_pairs,
        *embedding_assets(
            partitions.training_shard, settings, prefix=PREFIX, pairs="training_pairs", group_name="training", of_what="training pair"
        ),
        merged_features_asset(partitions.training_shard, prefix=PREFIX, pairs="training_pairs", group_name="training"),
        classifier,
    ], [test_auroc_above_floor]


def _classifier_files(result, chunk_length: int, partition: str, sampled, recipe: "TrainingConfig") -> dict[str, bytes]:
    from virnucpro_assets.models.classifier.native import write_native

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / CLASSIFIER_FILE
        write_native(
            result.weights,
            chunk_length,
            path,
            f"trained on training set {partition} with train.py's recipe (kept epoch {result.kept_epoch})",
        )
        files = {name: (Path(directory) / name).read_bytes() for name in (CLASSIFIER_FILE, "classifier.json")}
        digest = hash_files([path, path.with_suffix(".json")])
    metrics = {
        **result.summary(),
        "recipe": recipe.__dict__,
        "sampling": {"viral_blocks": sampled.viral_blocks, "other_blocks": sampled.other_blocks, "by_group": sampled.blocks_by_group},
        "epochs": [
            {
                "epoch": e.epoch,
                "train_loss": e.train_loss,
                "learning_rate": e.learning_rate,
                "seconds": e.seconds,
                **{f"test_{k}": v for k, v in e.test.__dict__.items()},
            }
            for e in result.epochs
        ],
    }
    return {
        **files,
        "classifier.sha256": f"{digest}\n".encode(),
        "metrics.json": (json.dumps(metrics, indent=2, allow_nan=True) + "\n").encode(),
        "epochs.png": epochs_plot(result),
        "confusion.png": confusion_plot(result),
        "roc.png": roc_plot(result),
    }
