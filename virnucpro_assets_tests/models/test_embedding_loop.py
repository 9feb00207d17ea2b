"""Progress reports of the embedding loop both embedders run, on the real models and a clock the test drives."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from virnucpro_assets.demo.models import write_tiny_esm2_checkpoint
from virnucpro_assets.models.batching import token_budget_batches
from virnucpro_assets.models.dnabert2 import DnabertEmbedder
from virnucpro_assets.models.dnabert2 import embedder as dnabert2_embedder
from virnucpro_assets.models.embedding_loop import PROGRESS_INTERVAL_S
from virnucpro_assets.models.esm2 import Esm2Embedder

GOLDEN = Path(__file__).parent.parent / "data" / "dnabert2_tiny"


class SteppingClock:
    """Each reading is `step` seconds after the previous one."""

    def __init__(self, step: float):
        self.step = step
        self.now = 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture(scope="module")
def dnabert() -> DnabertEmbedder:
    return DnabertEmbedder.from_source(str(GOLDEN))


@pytest.fixture(scope="module")
def sequences() -> list[str]:
    return (GOLDEN / "inputs.fasta").read_text().splitlines()[1::2]


def test_progress_is_reported_each_time_ten_seconds_have_passed(dnabert, sequences):
    token_counts = np.array([len(ids) for ids in dnabert.tokenize(sequences)])
    batches = list(token_budget_batches(token_counts, 64))
    assert len(batches) > 6
    done = np.cumsum([len(batch) for batch in batches])
    tokens = np.cumsum([token_counts[batch].sum() for batch in batches])
    calls = []
    # One reading when embedding starts and one per batch, half the interval apart: every second batch reports.
    clock = SteppingClock(PROGRESS_INTERVAL_S / 2)

    result = dnabert.embed(sequences, token_budget=64, on_progress=lambda *call: calls.append(call), clock=clock)

    assert calls == [(int(d), len(sequences), int(t)) for d, t in zip(done[1::2], tokens[1::2])]
    np.testing.assert_array_equal(result.vectors, dnabert.embed(sequences, token_budget=64).vectors)


def test_progress_counts_on_across_tokenized_chunks(dnabert, sequences, monkeypatch):
    monkeypatch.setattr(dnabert2_embedder, "TOKENIZE_CHUNK", 7)
    calls = []

    clock = SteppingClock(PROGRESS_INTERVAL_S)

    result = dnabert.embed(sequences, token_budget=600, on_progress=lambda *call: calls.append(call), clock=clock)

    done = [call[0] for call in calls]
    assert done == sorted(done) and len(set(done)) == len(done)
    assert len(calls) > len(sequences) // 7  # at least one batch per chunk
    assert calls[-1] == (len(sequences), len(sequences), result.tokens)


def test_no_report_before_ten_seconds(dnabert, sequences):
    calls = []
    dnabert.embed(sequences, token_budget=64, on_progress=lambda *call: calls.append(call), clock=SteppingClock(0.001))
    assert calls == []


def test_esm2_reports_progress_through_the_same_loop(tmp_path):
    embedder = Esm2Embedder.from_source(str(write_tiny_esm2_checkpoint(tmp_path / "esm2_t2_tiny.pt")))
    rng = random.Random(2)
    proteins = ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(1, 120))) for _ in range(25)]
    calls = []

    clock = SteppingClock(PROGRESS_INTERVAL_S)

    result = embedder.embed(proteins, token_budget=300, on_progress=lambda *call: calls.append(call), clock=clock)

    expected_batches = list(token_budget_batches([len(protein) + 2 for protein in proteins], 300))
    assert [call[0] for call in calls] == np.cumsum([len(batch) for batch in expected_batches]).tolist()
    assert calls[-1] == (len(proteins), len(proteins), result.tokens)
