"""With the embedding cache on, a later sample's embedding steps take the vectors of the sequences an
earlier sample embedded, their metadata say how many, and its predictions are those made without the
cache (CPU fp32)."""

import numpy as np
import polars as pl

from virnucpro_assets.pipeline.resources import StoreResource
from virnucpro_assets.storage import EMBEDDING_EXTENSION, load_embeddings
from virnucpro_assets_tests.pipeline.conftest import SHARD_ASSETS, reads_of_shard

EMBEDDINGS = ("dnabert_embeddings", "esm2_embeddings")


def test_a_later_sample_takes_the_vectors_of_the_reads_it_shares_with_an_earlier_one(pipeline, genome_reads):
    reads = reads_of_shard([read for read in genome_reads if len(read[1]) in (150, 300)], 0)
    first = pipeline.register(reads[:12], "first")
    second = pipeline.register([(f"{read_id}_again", sequence) for read_id, sequence in reads[6:18]], "second")  # 6 shared
    off = pipeline.resources
    pipeline.resources = {**off, "store": StoreResource(root=str(pipeline.store_root), embedding_cache="on")}
    for sample in (first, second):
        pipeline.materialize(["sample_reads"], sample)
    runs = {sample: pipeline.materialize(SHARD_ASSETS, pipeline.shard_partitions(sample)[0]) for sample in (first, second)}
    with_cache = outputs(pipeline, second)
    pipeline.resources = off
    without = pipeline.materialize(SHARD_ASSETS, pipeline.shard_partitions(second)[0])

    for asset in EMBEDDINGS:
        filled, used = (runs[sample].asset_materializations_for_node(asset)[0].metadata for sample in (first, second))
        plain = without.asset_materializations_for_node(asset)[0].metadata
        assert filled["cache_hits"].value == 0 and filled["cache_added"].value == filled["distinct_sequences"].value
        assert 0 < used["cache_hits"].value < used["distinct_sequences"].value == plain["distinct_sequences"].value
        assert used["cache_hits"].value + used["cache_misses"].value == used["distinct_sequences"].value
        assert used["tokens"].value < plain["tokens"].value and plain["embedding_cache"].value == "off"
        assert "_embedding_cache/v1/" in used["embedding_cache"].value and used["embedding_cache"].value.endswith("-float32")
        np.testing.assert_allclose(with_cache[asset], outputs(pipeline, second)[asset], rtol=0, atol=1e-6)
    cached, plain = with_cache["predictions"], outputs(pipeline, second)["predictions"]
    assert cached["prediction"].to_list() == plain["prediction"].to_list()
    np.testing.assert_allclose(cached.select("score1", "score2").to_numpy(), plain.select("score1", "score2").to_numpy(), rtol=0, atol=1e-6)


def outputs(pipeline, sample: str) -> dict:
    """Shard 000's embeddings (copied out of their files) and predictions."""
    directory = pipeline.store_root
    found = {
        asset: load_embeddings(directory / f"{asset}/sample={sample}/shard=000.{EMBEDDING_EXTENSION}").vectors.copy()
        for asset in EMBEDDINGS
    }
    found["predictions"] = pl.read_parquet(directory / f"predictions/sample={sample}/shard=000.parquet")
    return found
