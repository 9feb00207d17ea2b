"""DNABERT-S token ids made ahead of the GPU step: the same ids as the embedder's own tokenizing,
through a Parquet file and back, and the same vectors, bit for bit."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from virnucpro_assets.errors import CorruptDataError
from virnucpro_assets.models.dnabert2 import DnabertEmbedder
from virnucpro_assets.models.dnabert2 import embedder as embedder_module
from virnucpro_assets.models.dnabert2.tokens import TokenTable
from virnucpro_assets_tests.models.test_dnabert2 import GOLDEN

SEQUENCES = ["ACGTTGCA" * 9, "TTGACCA", "GGGCCCATATAT" * 4, "A", "CATG" * 30, "ACGTTGCA" * 9 + "G"]


@pytest.fixture(scope="module")
def embedder() -> DnabertEmbedder:
    return DnabertEmbedder.from_source(str(GOLDEN))


def test_a_token_table_survives_parquet_and_holds_the_embedders_ids(embedder, tmp_path):
    table = TokenTable.of(embedder.tokenizer, SEQUENCES)
    pq.write_table(table.to_arrow(), tmp_path / "tokens.parquet", row_group_size=2)  # read back in chunks
    back = TokenTable.from_arrow(pq.read_table(tmp_path / "tokens.parquet"))
    assert back.tokens.ids.dtype == np.int64
    assert back.sequences == SEQUENCES
    wanted = embedder.tokenize(SEQUENCES)
    assert [back.tokens.ids[s : s + n].tolist() for s, n in zip(back.tokens.starts, back.tokens.lengths)] == wanted


def test_sequences_are_taken_from_the_table_in_any_order_and_an_unknown_one_is_named(embedder):
    table = TokenTable.of(embedder.tokenizer, SEQUENCES)
    picked = [SEQUENCES[4], SEQUENCES[0], SEQUENCES[4]]
    tokens = table.for_sequences(picked)
    assert [tokens.ids[s : s + n].tolist() for s, n in zip(tokens.starts, tokens.lengths)] == embedder.tokenize(picked)
    with pytest.raises(CorruptDataError, match="dnabert_tokens \\[s\\|000\\] has no token ids for the nucleotide string TTTT"):
        table.for_sequences([SEQUENCES[1], "TTTT"], "dnabert_tokens [s|000]")


def test_embedding_given_token_ids_gives_the_same_bytes_as_tokenizing_in_the_step(embedder, monkeypatch):
    monkeypatch.setattr(embedder_module, "TOKENIZE_CHUNK", 4)  # several chunks, as on a real shard
    sequences = SEQUENCES * 3
    tokenized_here = embedder.embed(sequences, token_budget=256)
    given = embedder.embed(sequences, token_budget=256, pretokenized=TokenTable.of(embedder.tokenizer, sequences).tokens)
    assert given.tokens == tokenized_here.tokens
    assert np.array_equal(given.vectors, tokenized_here.vectors)
    with pytest.raises(ValueError, match="2 tokenized sequences given for 3 sequences"):
        embedder.embed(SEQUENCES[:3], pretokenized=TokenTable.of(embedder.tokenizer, SEQUENCES[:2]).tokens)
