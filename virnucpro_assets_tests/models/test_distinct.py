"""Each distinct sequence embedded once, on the real tiny models: the same vectors as embedding every
row, fewer tokens, and the float32 redo and progress counting distinct sequences; with the embedding
cache, a later sample embeds only what an earlier one did not."""

from __future__ import annotations

import itertools
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from virnucpro_assets.demo.models import write_tiny_esm2_checkpoint
from virnucpro_assets.models.distinct import distinct_sequences, embed_rows
from virnucpro_assets.models.dnabert2 import DnabertEmbedder
from virnucpro_assets.models.esm2 import Esm2Embedder
from virnucpro_assets.storage.embedding_cache import EmbeddingCache

GOLDEN = Path(__file__).parent.parent / "data" / "dnabert2_tiny"


def test_distinct_sequences_in_order_of_first_occurrence_with_each_rows_index():
    column = pa.chunked_array([pa.array(["MK", "AC", "MK"], pa.large_string()), pa.array(["GG", "AC"], pa.large_string())])
    distinct = distinct_sequences(column)
    assert distinct.sequences == ["MK", "AC", "GG"]
    assert distinct.inverse.tolist() == [0, 1, 0, 2, 1] and distinct.rows == 5
    vectors = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    np.testing.assert_array_equal(distinct.expand(vectors), [[1.0], [2.0], [1.0], [3.0], [2.0]])
    with pytest.raises(ValueError, match="2 vectors for 3 distinct sequences"):
        distinct.expand(vectors[:2])
    empty = distinct_sequences(pa.array([], pa.large_string()))
    assert empty.sequences == [] and empty.expand(np.zeros((0, 4), np.float32)).shape == (0, 4)
    with pytest.raises(ValueError, match="1 of 2 sequences are missing"):
        distinct_sequences(pa.array(["MK", None]))


def with_repeats(sequences: list[str], seed: int) -> list[str]:
    """`sequences` with about half of them repeated, at random places."""
    rng = random.Random(seed)
    rows = sequences + [rng.choice(sequences) for _ in range(len(sequences) // 2)]
    rng.shuffle(rows)
    return rows


def test_esm2_on_distinct_proteins_gives_every_row_its_vector_for_fewer_tokens(tmp_path):
    embedder = Esm2Embedder.from_source(str(write_tiny_esm2_checkpoint(tmp_path / "esm2_t2_tiny.pt")))
    rng = random.Random(3)
    proteins = ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(1, 90))) for _ in range(30)]
    rows = with_repeats(proteins, seed=4)
    progress = []
    clock = itertools.count(0, 10).__next__  # each reading 10 s after the last: a report per batch

    reduced, distinct = embed_rows(
        lambda sequences: embedder.embed(sequences, token_budget=400, on_progress=lambda *call: progress.append(call), clock=clock),
        pa.array(rows),
    )
    every_row = embedder.embed(rows, token_budget=400)

    assert len(distinct.sequences) == len(set(rows)) == len(proteins) < len(rows)
    np.testing.assert_allclose(reduced.vectors, every_row.vectors, rtol=0, atol=1e-6)
    for protein in set(rows):  # a repeat gets the very same vector
        same = reduced.vectors[[row == protein for row in rows]]
        assert (same == same[0]).all()
    assert reduced.tokens == sum(len(p) + 2 for p in proteins) < every_row.tokens
    assert progress and {total for _, total, _ in progress} == {len(proteins)}


def test_the_float32_redo_runs_once_per_distinct_sequence(caplog):
    sequences = (GOLDEN / "inputs.fasta").read_text().splitlines()[1::2]
    half = DnabertEmbedder.from_source(str(GOLDEN), dtype=torch.bfloat16)
    with torch.no_grad():
        half.model.embeddings.word_embeddings.weight[0] = float("nan")  # [UNK]: poisons sequences with an N
    poisoned = sum(0 in ids for ids in half.tokenize(sequences))
    assert 0 < poisoned < len(sequences)
    rows = with_repeats(sequences, seed=5)

    with caplog.at_level(logging.WARNING, logger="virnucpro_assets.models.embedding_loop"):
        reduced, distinct = embed_rows(lambda s: half.embed(s, token_budget=600), pa.array(rows))

    assert np.isfinite(reduced.vectors).all() and len(reduced.vectors) == len(rows)
    assert [r.getMessage().split(" sequences")[0] for r in caplog.records] == [f"{poisoned} of {len(distinct.sequences)}"]
    assert len(distinct.sequences) == len(sequences)


def test_a_cache_gives_a_later_sample_the_vectors_an_earlier_one_embedded(tmp_path):
    embedder = Esm2Embedder.from_source(str(write_tiny_esm2_checkpoint(tmp_path / "esm2_t2_tiny.pt")))
    rng = random.Random(6)
    proteins = ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(1, 90))) for _ in range(60)]
    first, second = with_repeats(proteins[:40], seed=7), with_repeats(proteins[20:], seed=8)  # 20 proteins shared

    def embed(sequences):
        return embedder.embed(sequences, token_budget=400)

    def cache():
        return EmbeddingCache(tmp_path / "cache", embedder.embedding_key, "float32", embedder.dim, 10**9)

    cold = cache()
    cached, _ = embed_rows(embed, pa.array(first), cold)
    plain, _ = embed_rows(embed, pa.array(first))
    assert (cold.stats.hits, cold.stats.misses, cold.stats.added) == (0, 40, 40)
    assert cached.vectors.tobytes() == plain.vectors.tobytes()  # nothing found: the same batches, the same bytes

    warm = cache()
    cached, distinct = embed_rows(embed, pa.array(second), warm)
    plain, _ = embed_rows(embed, pa.array(second))
    assert (warm.stats.hits, warm.stats.misses, warm.stats.added) == (20, 20, 20)
    assert cached.tokens == sum(len(p) + 2 for p in proteins[40:]) < plain.tokens  # only the new ones embedded
    np.testing.assert_allclose(cached.vectors, plain.vectors, rtol=0, atol=1e-6)
    for protein in set(second):  # repeats still share their vector
        same = cached.vectors[[row == protein for row in second]]
        assert (same == same[0]).all()


def test_the_dnabert_cache_key_follows_weights_config_and_tokenizer_not_the_path(tmp_path):
    copy, changed = tmp_path / "copy", tmp_path / "changed"
    for directory in (copy, changed):
        shutil.copytree(GOLDEN, directory)
    tokenizer = changed / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text() + "\n")
    keys = [DnabertEmbedder.from_source(str(directory)).embedding_key for directory in (GOLDEN, copy, changed)]
    assert keys[0] == keys[1] != keys[2]
