"""The training assets end to end on tiny models: GenBank files -> a classifier in the store that
the predictions asset can be configured with."""

import json

import dagster as dg

from virnucpro_assets.definitions import build_definitions
from virnucpro_assets.demo import GENOMES
from virnucpro_assets.demo.training import write_training_genomes
from virnucpro_assets.models.classifier import load_classifier
from virnucpro_assets.pipeline.assets.training import ClassifierTraining, TrainingSettings
from virnucpro_assets.pipeline.gpu import GpuResource
from virnucpro_assets.pipeline.models import ModelsResource, classifier_version
from virnucpro_assets.pipeline.partitions import TRAINING_SETS, Partitions
from virnucpro_assets.pipeline.resources import store_resources
from virnucpro_assets.settings import Settings, resolve_classifier
from virnucpro_assets.training.registry import TrainingRegistry, training_partition
from virnucpro_assets_tests.pipeline.conftest import demo_models  # noqa: F401 (fixture)

SHARD_STEPS = [
    "training_pairs",
    "training_dnabert_tokens",
    "training_dnabert_embeddings",
    "training_esm2_embeddings",
    "training_merged_features",
]


def test_training_set_to_classifier(tmp_path, demo_models):  # noqa: F811
    partitions = Partitions(2)
    defs = build_definitions(Settings.from_environment(), partitions)
    store = tmp_path / "store"
    registry = TrainingRegistry(store)
    for path, label in write_training_genomes(GENOMES, tmp_path / "genbank"):
        registry.add("demo", path, label)
    key = training_partition("demo", 500)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TRAINING_SETS, [key])
    resources = {
        **defs.resources,
        **store_resources(str(store)),
        "models": ModelsResource(dnabert=str(demo_models.dnabert), esm2=str(demo_models.esm2), classifier=str(demo_models.classifier)),
        "gpu": GpuResource(lease_dir=str(tmp_path / "leases")),
        "training": TrainingSettings(block_size=4, min_test_auroc=0.0),
    }

    def materialize(selection, partition, **run_config):
        return dg.materialize(
            [*defs.assets, *defs.asset_checks],
            instance=instance,
            resources=resources,
            selection=selection,
            partition_key=partition,
            **run_config,
        )

    for shard in partitions.shard_keys:
        materialize(SHARD_STEPS, f"{key}|{shard}")
    config = ClassifierTraining(max_epochs=3)
    result = materialize(["classifier"], key, run_config={"ops": {"classifier": {"config": config.model_dump()}}})

    metadata = result.asset_materializations_for_node("classifier")[0].metadata
    assert metadata["epochs"].value == 3 and metadata["kept_epoch"].value == 3
    assert metadata["viral_blocks"].value >= 1 and metadata["other_blocks"].value >= 1
    assert "data:image/png;base64," in metadata["roc_plot"].value
    checks = result.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [True] and checks[0].metadata["floor"].value == 0.0

    path = resolve_classifier(f"trained:{key}", str(store))
    classifier = load_classifier(path, 500)
    assert classifier.identity.content_hash == metadata["classifier_sha256"].value
    assert classifier.identity.content_hash[:16] in classifier_version(path)
    metrics = json.loads((store / "classifier" / f"sample={key}" / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 3 and metrics["recipe"]["split"] == "pairs"
    assert classifier.score(load_features(store, key))[0].shape[1] == 2


def load_features(store, key):
    from virnucpro_assets.storage import load_embeddings

    return load_embeddings(store / "training_merged_features" / f"sample={key}" / "shard=000.arrow").vectors
