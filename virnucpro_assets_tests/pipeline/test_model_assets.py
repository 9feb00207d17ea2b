"""The whole graph on a small sample with the tiny demo models, checked against direct computations."""

import math

import dagster as dg
import numpy as np
import polars as pl
import pytest

from benchmarks.original import process_reads
from virnucpro_assets.definitions import partitions
from virnucpro_assets.models.classifier import load_classifier
from virnucpro_assets.models.dnabert2 import DnabertEmbedder
from virnucpro_assets.models.esm2 import Esm2Embedder
from virnucpro_assets.pipeline.models import classifier_version
from virnucpro_assets.settings import host_name
from virnucpro_assets.storage import EMBEDDING_EXTENSION, load_embeddings
from virnucpro_assets_tests.pipeline.conftest import reads_of_shard


def test_sample_from_reads_to_the_original_result_files(pipeline, genome_reads):
    reads = genome_reads[:40]  # lengths 1 to 1777: reads shorter than a codon, reads without a kept frame, long ones
    sample = pipeline.register(reads, "tiny")
    report = pipeline.materialize_sample(sample)
    store = pipeline.store_root

    dnabert = DnabertEmbedder.from_source(str(pipeline.models.dnabert))
    esm2 = Esm2Embedder.from_source(str(pipeline.models.esm2))
    classifier = load_classifier(pipeline.models.classifier, 500)
    expected_rows = []
    for index, shard in enumerate(partitions.shard_keys):
        shard_pairs = process_reads(reads_of_shard(reads, index), 500)
        ids = [p[0] for p in shard_pairs]
        dna_ids, dna = load_embeddings(store / f"dnabert_embeddings/sample=tiny/shard={shard}.{EMBEDDING_EXTENSION}")
        protein_ids, protein = load_embeddings(store / f"esm2_embeddings/sample=tiny/shard={shard}.{EMBEDDING_EXTENSION}")
        assert dna_ids.to_pylist() == ids == protein_ids.to_pylist()
        # One at a time, as the original feeds the models.
        for row, (_, nucleotide, amino_acids) in enumerate(shard_pairs):
            one_dna = dnabert.embed([nucleotide]).vectors[0]
            one_protein = esm2.embed([amino_acids]).vectors[0]
            np.testing.assert_allclose(dna[row], one_dna, atol=1e-4)
            np.testing.assert_allclose(protein[row], one_protein, atol=1e-4)
        merged_ids, merged = load_embeddings(store / f"merged_features/sample=tiny/shard={shard}.{EMBEDDING_EXTENSION}")
        assert merged_ids.to_pylist() == ids
        np.testing.assert_array_equal(merged, np.hstack([dna, protein]))

        predicted = pl.read_parquet(store / f"predictions/sample=tiny/shard={shard}.parquet")
        assert predicted.columns == ["pair_id", "read_id", "chunk_id", "prediction", "score1", "score2"]
        scores, decisions = classifier.score(merged)
        np.testing.assert_array_equal(predicted.select("score1", "score2").to_numpy(), scores)
        assert predicted["prediction"].to_list() == decisions
        assert predicted["chunk_id"].to_list() == [i[:-2] for i in ids]
        expected_rows += [
            (reads.index(next(r for r in reads if i.startswith(r[0] + "_chunk_"))), i, d, s) for i, d, s in zip(ids, decisions, scores)
        ]

    # prediction_results.txt: every pair once, reads in input-file order, scores as float32 prints them.
    expected_rows.sort(key=lambda row: row[0])
    text = (store / "sample_report/sample=tiny/prediction_results.txt").read_text().splitlines()
    assert text[0] == "Sequence_ID\tPrediction\tscore1\tscore2"
    assert text[1:] == ["\t".join([i, d, str(s[0]), str(s[1])]) for _, i, d, s in expected_rows]
    highest = (store / "sample_report/sample=tiny/prediction_results_highestscore.csv").read_text().splitlines()
    chunks = sorted({i[:-2] for _, i, _, _ in expected_rows})
    verdict = {
        c: max(s[1] for _, i, _, s in expected_rows if i[:-2] == c) >= max(s[0] for _, i, _, s in expected_rows if i[:-2] == c)
        for c in chunks
    }
    assert highest == ["Modified_ID\tIs_Virus"] + [f"{c}\t{verdict[c]}" for c in chunks]
    assert (store / "sample_report/sample=tiny/per_read_scores.png").read_bytes()[:4] == b"\x89PNG"
    metadata = report.asset_materializations_for_node("sample_report")[0].metadata
    assert metadata["pairs"].value == len(expected_rows)
    assert metadata["scored_chunks"].value == len(chunks)
    assert metadata["virus_chunks"].value == sum(verdict.values())

    # per_read.tsv: every read of the sample, in file order, scored or not.
    per_read = pl.read_csv(store / "sample_report/sample=tiny/per_read.tsv", separator="\t", infer_schema=False)
    assert per_read["read_id"].to_list() == [read_id for read_id, _ in reads]
    assert per_read["length"].cast(int).to_list() == [len(sequence) for _, sequence in reads]
    assert per_read["chunks"].cast(int).to_list() == [math.ceil(len(sequence) / 500) for _, sequence in reads]
    frames = [[s for position, _, _, s in expected_rows if position == index] for index in range(len(reads))]
    assert per_read["kept_frames"].cast(int).to_list() == [len(f) for f in frames]
    expected_decisions = ["unscored" if not f else "virus" if max(s[1] for s in f) >= 0.5 else "others" for f in frames]
    assert per_read["decision"].to_list() == expected_decisions
    expected_reasons = [
        None if f else "shorter than 3 letters: no codon" if len(sequence) < 3 else "no stop-free frame"
        for f, (_, sequence) in zip(frames, reads)
    ]
    assert per_read["reason"].to_list() == expected_reasons
    assert {"virus", "unscored"} <= set(expected_decisions) and None in expected_reasons and "no stop-free frame" in expected_reasons
    assert metadata["reads"].value == len(reads) and metadata["unscored_reads"].value == expected_decisions.count("unscored")
    assert pl.read_parquet(store / "sample_report/sample=tiny/per_read.parquet")["read_id"].to_list() == per_read["read_id"].to_list()

    # report.html, linked from the materialization, names the models that made the shards.
    page_path = store / "sample_report/sample=tiny/report.html"
    assert metadata["report"].value == str(page_path)
    page = page_path.read_text()
    assert f'id="count-reads">{len(reads)}<' in page
    for asset, key in (("dnabert_embeddings", "model_sha256"), ("esm2_embeddings", "model_sha256"), ("predictions", "classifier_sha256")):
        records = pipeline.instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
        assert records[0].asset_materialization.metadata[key].value in page


def test_the_report_decides_at_the_configured_threshold(pipeline, genome_reads):
    from virnucpro_assets.pipeline.resources import ReportSettings

    pipeline.resources["report"] = ReportSettings(virus_threshold=0.0)
    sample = pipeline.register(genome_reads[:12], "threshold")
    metadata = pipeline.materialize_sample(sample).asset_materializations_for_node("sample_report")[0].metadata
    per_read = pl.read_parquet(pipeline.store_root / f"sample_report/sample={sample}/per_read.parquet")
    assert per_read.height == 12 and set(per_read["decision"]) == {"virus", "unscored"}  # every scored read reaches 0
    assert metadata["virus_threshold"].value == 0.0 and metadata["virus_reads"].value == metadata["reads_scored"].value > 0
    assert (
        "<tr><th>virus threshold</th><td>0.0</td></tr>" in (pipeline.store_root / f"sample_report/sample={sample}/report.html").read_text()
    )


def test_embedding_metadata_names_model_device_and_precision(pipeline, genome_reads):
    sample = pipeline.register([r for r in genome_reads if len(r[1]) >= 300][:6], "meta")
    pipeline.materialize(["sample_reads"], sample)
    partition = pipeline.shard_partitions(sample)[0]
    result = pipeline.materialize(["translated_proteins", "esm2_embeddings"], partition)
    metadata = result.asset_materializations_for_node("esm2_embeddings")[0].metadata
    assert metadata["device"].value == f"{host_name()}/cpu" and metadata["precision"].value == "float32"
    assert metadata["model"].value == "esm2_demo" and len(metadata["model_sha256"].value) == 64
    assert metadata["tokens"].value > 0 and metadata["dagster/row_count"].value >= 0


def test_a_missing_classifier_is_one_clear_error(pipeline, genome_reads, tmp_path):
    from virnucpro_assets.errors import ModelNotFoundError
    from virnucpro_assets.pipeline.models import ModelsResource

    pipeline.resources["models"] = ModelsResource(
        dnabert=str(pipeline.models.dnabert), esm2=str(pipeline.models.esm2), classifier=str(tmp_path / "500_model.pth")
    )
    sample = pipeline.register(genome_reads[:4], "nomodel")
    pipeline.materialize(["sample_reads"], sample)
    partition = pipeline.shard_partitions(sample)[0]
    pipeline.materialize(["translated_proteins", "dnabert_tokens", "dnabert_embeddings", "esm2_embeddings", "merged_features"], partition)
    # The run's model check fails it at its start, before the step runs.
    with pytest.raises(dg.DagsterResourceFunctionError) as raised:
        pipeline.materialize(["predictions"], partition)
    assert isinstance(raised.value.__cause__, ModelNotFoundError) and "500_model.pth" in str(raised.value.__cause__)


def test_replacing_the_classifier_changes_the_code_version(tmp_path):
    from virnucpro_assets.demo.models import write_demo_classifier

    path = tmp_path / "c.safetensors"
    write_demo_classifier(path, 500, seed=1, feature_width=8)
    before = classifier_version(str(path))
    write_demo_classifier(path, 500, seed=2, feature_width=8)
    assert classifier_version(str(path)) != before


TENSOR_ASSETS = ["dnabert_embeddings", "esm2_embeddings", "merged_features"]


def test_a_store_with_parquet_embeddings_is_seen_as_changed_and_left_with_arrow_files(pipeline, genome_reads):
    from virnucpro_assets.definitions import defs

    for asset in TENSOR_ASSETS:  # the tensor format is part of each tensor asset's code version
        assert defs.resolve_assets_def(asset).code_versions_by_key[dg.AssetKey(asset)].endswith(f"store={EMBEDDING_EXTENSION}")
    sample = pipeline.register([r for r in genome_reads if len(r[1]) >= 300][:4], "former")
    pipeline.materialize(["sample_reads"], sample)
    partition = pipeline.shard_partitions(sample)[0]
    shard = partition.keys_by_dimension["shard"]
    former = [pipeline.store_root / asset / f"sample={sample}" / f"shard={shard}.parquet" for asset in TENSOR_ASSETS]
    for path in former:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"a Parquet embedding table of an earlier version")
    pipeline.materialize(["translated_proteins", "dnabert_tokens", *TENSOR_ASSETS], partition)
    assert sorted(p.name for path in former for p in path.parent.iterdir()) == [f"shard={shard}.{EMBEDDING_EXTENSION}"] * 3
