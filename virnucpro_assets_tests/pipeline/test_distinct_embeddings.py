"""The embedding assets embed each distinct sequence of a shard once (identical reads share a shard): repeats get the same vector,
the metadata counts pairs, distinct sequences and the tokens embedded, and the shard's predictions
are those of embedding every pair (CPU fp32)."""

import numpy as np
import polars as pl

from virnucpro_assets.definitions import partitions
from virnucpro_assets.models.classifier import load_classifier
from virnucpro_assets.models.dnabert2 import DnabertEmbedder
from virnucpro_assets.models.esm2 import Esm2Embedder
from virnucpro_assets.sequences.sharding import shard_of_reads
from virnucpro_assets.storage import EMBEDDING_EXTENSION, load_embeddings
from virnucpro_assets_tests.pipeline.conftest import SHARD_ASSETS


def test_each_distinct_sequence_is_embedded_once_with_the_predictions_of_every_pair(pipeline, genome_reads):
    originals = [read for read in genome_reads if len(read[1]) in (150, 299, 300)][: 2 * partitions.shards]
    copies = [(f"{read_id}_copy", sequence) for read_id, sequence in originals[: partitions.shards]]
    sample = pipeline.register(originals + copies, "dups")
    pipeline.materialize(["sample_reads"], sample)
    # A copy lands in its original's shard, whatever their places in the file.
    partition = pipeline.shard_partitions(sample)[int(shard_of_reads([originals[0][1]], partitions.shards)[0])]
    run = pipeline.materialize(SHARD_ASSETS, partition)

    shard = partition.keys_by_dimension["shard"]
    pairs = pl.read_parquet(pipeline.store_root / f"translated_proteins/sample={sample}/shard={shard}.parquet")
    copied = pairs.filter(pl.col("read_id") == copies[0][0])
    assert copied.height > 0
    dnabert = DnabertEmbedder.from_source(str(pipeline.models.dnabert))
    esm2 = Esm2Embedder.from_source(str(pipeline.models.esm2))
    every_pair = {}
    for asset, column, embedder in (("dnabert_embeddings", "nucleotide", dnabert), ("esm2_embeddings", "protein", esm2)):
        metadata = run.asset_materializations_for_node(asset)[0].metadata
        distinct = pairs[column].unique(maintain_order=True).to_list()
        assert metadata["pairs"].value == pairs.height > metadata["distinct_sequences"].value == len(distinct)
        assert metadata["tokens"].value == int(embedder.tokenized(distinct).token_counts.sum())

        ids, vectors = load_embeddings(pipeline.store_root / f"{asset}/sample={sample}/shard={shard}.{EMBEDDING_EXTENSION}")
        assert ids.to_pylist() == pairs["pair_id"].to_list()
        row = {pair_id: index for index, pair_id in enumerate(ids.to_pylist())}
        for pair_id in copied["pair_id"]:  # the copy's frames carry its original's vectors, bit for bit
            np.testing.assert_array_equal(vectors[row[pair_id]], vectors[row[pair_id.replace("_copy", "", 1)]])
        every_pair[asset] = embedder.embed(pairs[column].to_list()).vectors
        np.testing.assert_allclose(vectors, every_pair[asset], rtol=0, atol=1e-6)

    classifier = load_classifier(pipeline.models.classifier, 500)
    scores, decisions = classifier.score(np.hstack([every_pair["dnabert_embeddings"], every_pair["esm2_embeddings"]]))
    predicted = pl.read_parquet(pipeline.store_root / f"predictions/sample={sample}/shard={shard}.parquet")
    assert predicted["prediction"].to_list() == decisions
    np.testing.assert_allclose(predicted.select("score1", "score2").to_numpy(), scores, rtol=0, atol=1e-6)


def test_the_dnabert_step_embeds_the_token_ids_its_cpu_step_made_without_tokenizing(pipeline, genome_reads, monkeypatch):
    sample = pipeline.register(genome_reads[:40] + [(f"{read_id}_again", sequence) for read_id, sequence in genome_reads[:10]], "tokens")
    pipeline.materialize(["sample_reads"], sample)
    partition = pipeline.shard_partitions(sample)[0]
    tokens_run = pipeline.materialize(["translated_proteins", "dnabert_tokens"], partition)

    shard = partition.keys_by_dimension["shard"]
    pairs = pl.read_parquet(pipeline.store_root / f"translated_proteins/sample={sample}/shard={shard}.parquet")
    distinct = pairs["nucleotide"].unique(maintain_order=True).to_list()
    assert pairs.height > len(distinct) > 0
    stored = pl.read_parquet(pipeline.store_root / f"dnabert_tokens/sample={sample}/shard={shard}.parquet")
    dnabert = DnabertEmbedder.from_source(str(pipeline.models.dnabert))
    assert stored["nucleotide"].to_list() == distinct
    assert stored["token_ids"].to_list() == dnabert.tokenize(distinct)
    metadata = tokens_run.asset_materializations_for_node("dnabert_tokens")[0].metadata
    assert (metadata["pairs"].value, metadata["distinct_sequences"].value) == (pairs.height, len(distinct))
    assert metadata["tokens"].value == sum(map(len, stored["token_ids"].to_list()))

    def no_tokenizing(self, sequences):
        raise AssertionError("the GPU step tokenized")

    monkeypatch.setattr(DnabertEmbedder, "tokenized", no_tokenizing)
    pipeline.materialize(["dnabert_embeddings"], partition)
    ids, vectors = load_embeddings(pipeline.store_root / f"dnabert_embeddings/sample={sample}/shard={shard}.{EMBEDDING_EXTENSION}")
    assert ids.to_pylist() == pairs["pair_id"].to_list()
    monkeypatch.undo()
    wanted = dnabert.embed(distinct).vectors  # the step's input: the distinct sequences, tokenized here
    np.testing.assert_array_equal(vectors, wanted[[distinct.index(s) for s in pairs["nucleotide"]]])
