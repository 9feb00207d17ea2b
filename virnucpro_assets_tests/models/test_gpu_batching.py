"""The host side of the GPU paths, on the CPU: batches built without Python loops, token budgets from
free device memory, DNABERT tokenization overlapped with embedding chunk by chunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from virnucpro_assets.models import batching, dnabert2
from virnucpro_assets.models.batching import memory_token_budget, ragged_rows
from virnucpro_assets.models.dnabert2 import DnabertEmbedder
from virnucpro_assets.models.dnabert2 import embedder as dnabert2_embedder

GOLDEN = Path(__file__).parent.parent / "data" / "dnabert2_tiny"


def test_ragged_rows_lays_the_chosen_rows_out_padded():
    rows = [[5, 6, 7], [8], [], [9, 10]]
    values = np.array([v for row in rows for v in row])
    lengths = np.array([len(row) for row in rows])
    starts = np.cumsum(lengths) - lengths

    out = ragged_rows(values, starts, lengths, np.array([3, 0, 1]), fill=-1, width=5, column=1)

    np.testing.assert_array_equal(out, [[-1, 9, 10, -1, -1], [-1, 5, 6, 7, -1], [-1, 8, -1, -1, -1]])


def test_token_budget_is_a_share_of_free_memory_capped(monkeypatch):
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 6 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 4 * gib)  # 2 GiB cached, reusable

    assert memory_token_budget("cuda", bytes_per_token=2**20, ceiling=100_000) == 6 * 1024  # half of 12 GiB
    assert memory_token_budget("cuda", bytes_per_token=2**10, ceiling=32768) == 32768
    assert memory_token_budget("cuda", bytes_per_token=100 * gib, ceiling=32768) == 1


def test_cpu_budgets_are_the_originals():
    assert DnabertEmbedder.from_source(str(GOLDEN)).token_budget(longest=100) == dnabert2.DEFAULT_TOKEN_BUDGET


def test_dnabert_embeds_the_same_when_tokenized_in_chunks(monkeypatch):
    sequences = (GOLDEN / "inputs.fasta").read_text().splitlines()[1::2]
    expected = load_file(GOLDEN / "expected.safetensors")["mean_hidden"].numpy()
    monkeypatch.setattr(dnabert2_embedder, "TOKENIZE_CHUNK", 3)  # several chunks, the last one short
    assert len(sequences) % 3

    result = DnabertEmbedder.from_source(str(GOLDEN)).embed(sequences, token_budget=600)

    assert np.abs(result.vectors - expected).max() <= 1e-5
    assert result.tokens == sum(len(ids) for ids in DnabertEmbedder.from_source(str(GOLDEN)).tokenize(sequences))


@pytest.mark.parametrize("token_budget", [1, 50, 10_000])
def test_batches_cover_every_index_once(token_budget):
    lengths = np.random.default_rng(1).integers(1, 40, size=57)
    batches = list(batching.token_budget_batches(lengths, token_budget))
    assert sorted(np.concatenate(batches).tolist()) == list(range(57))
