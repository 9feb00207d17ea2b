"""The IO managers carry every asset's data: standard metadata, digests checked on every load, files
that failed a blocking check withdrawn, and the same results on an object store as on a disk."""

import numpy as np
import pytest

from virnucpro_assets.errors import CorruptDataError, MissingInputError
from virnucpro_assets.models.classifier import Classifier
from virnucpro_assets.pipeline.resources import store_resources
from virnucpro_assets.settings import host_name
from virnucpro_assets_tests.pipeline.conftest import SHARD_ASSETS

REPORT_FILES = ["per_read.parquet", "per_read_scores.png", "prediction_results.txt", "prediction_results_highestscore.csv"]


@pytest.fixture
def sample(pipeline, genome_reads):
    name = pipeline.register([r for r in genome_reads if len(r[1]) >= 300][:12], "io")
    pipeline.materialize(["sample_reads"], name)
    return name


def materialization(result, asset):
    return {key: value.value for key, value in result.asset_materializations_for_node(asset)[0].metadata.items()}


def test_every_materialization_carries_row_count_schema_path_and_digests(pipeline, sample):
    partition = pipeline.shard_partitions(sample)[0]
    result = pipeline.materialize(SHARD_ASSETS, partition)
    for asset in SHARD_ASSETS:
        metadata = materialization(result, asset)
        extension = "arrow" if asset in ("dnabert_embeddings", "esm2_embeddings", "merged_features") else "parquet"
        path = pipeline.store_root / asset / f"sample={sample}" / f"shard={partition.keys_by_dimension['shard']}.{extension}"
        assert metadata["path"] == str(path) and path.is_file()
        assert list(metadata["checksums"]) == [path.name] and metadata["checksums"][path.name].startswith("xxh3_128x64m:")
        columns = [column.name for column in metadata["dagster/column_schema"].columns]
        if asset == "dnabert_tokens":  # a row per distinct nucleotide string
            assert metadata["dagster/row_count"] == metadata["distinct_sequences"] > 0
            assert columns == ["nucleotide", "token_ids"]
        else:
            assert metadata["dagster/row_count"] == metadata.get("pairs", metadata["dagster/row_count"]) > 0
            assert columns[0] == "pair_id"
    assert materialization(result, "esm2_embeddings")["device"] == f"{host_name()}/cpu"


def test_plausible_floats_written_over_an_embedding_fail_the_next_step_naming_file_and_partition(pipeline, sample):
    partition = pipeline.shard_partitions(sample)[0]
    pipeline.materialize(SHARD_ASSETS[: SHARD_ASSETS.index("esm2_embeddings") + 1], partition)
    path = pipeline.store_root / "esm2_embeddings" / f"sample={sample}" / f"shard={partition.keys_by_dimension['shard']}.arrow"
    data = bytearray(path.read_bytes())
    data[-4096:-1024] = np.random.default_rng(0).standard_normal(768, dtype=np.float32).tobytes()
    path.write_bytes(bytes(data))

    with pytest.raises(CorruptDataError) as failure:
        pipeline.materialize(["merged_features"], partition)
    message = str(failure.value)
    assert str(path) in message and "is not what was written" in message
    assert f"re-materialize esm2_embeddings for partition {partition}" in message


def test_a_failed_blocking_check_withdraws_the_file_and_later_steps_say_so(pipeline, sample, monkeypatch):
    partitions = pipeline.shard_partitions(sample)
    for partition in partitions[1:]:
        pipeline.materialize(SHARD_ASSETS, partition)
    monkeypatch.setattr(
        Classifier, "score", lambda self, features: (np.full((len(features), 2), np.nan, np.float32), ["others"] * len(features))
    )
    result = pipeline.materialize(SHARD_ASSETS, partitions[0], raise_on_error=False)
    assert not next(e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "scores_are_probabilities").passed

    directory = pipeline.store_root / "predictions" / f"sample={sample}"
    shard = partitions[0].keys_by_dimension["shard"]
    assert not (directory / f"shard={shard}.parquet").exists()
    assert (directory / f".shard={shard}.parquet.failed-check").exists()
    with pytest.raises(MissingInputError, match=f"predictions \\[{sample}\\|{shard}\\] cannot be read: it failed its blocking check"):
        pipeline.materialize(["sample_report"], sample)


def test_a_sample_on_an_object_store_gives_the_same_files_as_on_a_disk(pipeline, genome_reads, s3_bucket, tmp_path):
    reads = [r for r in genome_reads if len(r[1]) >= 150][:24]
    local = pipeline.register(reads, "same")
    pipeline.materialize_sample(local)
    on_disk = {name: (pipeline.store_root / "sample_report" / "sample=same" / name).read_bytes() for name in REPORT_FILES}

    url, fs = s3_bucket
    pipeline.resources.update(store_resources(f"{url}/store", registry_root=str(pipeline.store_root)))
    pipeline.instance.delete_dynamic_partition("samples", "same")
    pipeline.instance.add_dynamic_partitions("samples", ["same"])
    result = pipeline.materialize_sample(local)
    assert materialization(result, "sample_report")["path"] == f"{url}/store/sample_report/sample=same"
    assert materialization(result, "sample_report")["report"] == f"{url}/store/sample_report/sample=same/report.html"
    in_bucket = {name: fs.cat_file(f"{url}/store/sample_report/sample=same/{name}") for name in REPORT_FILES}
    assert in_bucket == on_disk
    assert [path.rsplit("/", 1)[1] for path in fs.find(f"{url}/store/merged_features")] == [
        f"shard={s}.arrow" for s in ("000", "001", "002")
    ]
