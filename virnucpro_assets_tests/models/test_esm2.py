"""ESM-2 embeddings against fair-esm's own one-protein-at-a-time path, on a tiny checkpoint written in
the hub's on-disk format and loaded the way users load models."""

from __future__ import annotations

import argparse
import io
import random
import urllib.error
import urllib.request
from pathlib import Path

import esm
import numpy as np
import pytest
import torch

from virnucpro_assets.demo.models import write_tiny_esm2_checkpoint
from virnucpro_assets.errors import ModelFormatError, ModelNotFoundError
from virnucpro_assets.models.batching import token_budget_batches
from virnucpro_assets.models.esm2 import Esm2Embedder, hub_checkpoint_path
from virnucpro_assets.models.identity import hash_files

LETTERS = "ACDEFGHIKLMNPQRSTVWY" + "XBUZO"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path / "hub"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_esm2_checkpoint(tmp_path_factory.mktemp("esm2") / "esm2_t2_tiny.pt")


@pytest.fixture(scope="module")
def embedder(checkpoint) -> Esm2Embedder:
    return Esm2Embedder.from_source(str(checkpoint))


def random_proteins(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    lengths = [1, 2, 300] + [rng.randint(1, 300) for _ in range(count - 3)]
    return ["".join(rng.choice(LETTERS) for _ in range(length)) for length in lengths]


def original_embeddings(checkpoint: Path, proteins: list[str]) -> np.ndarray:
    """The original's extract_esm, one protein at a time, on the model from fair-esm's own local loader
    (which insists on the contact-regression file that the hub serves beside each checkpoint)."""
    regression = checkpoint.with_name(f"{checkpoint.stem}-contact-regression.pt")
    # Since torch 2.6 fair-esm's own torch.load refuses the checkpoint's argparse.Namespace without this.
    with torch.serialization.safe_globals([argparse.Namespace]):
        config = torch.load(checkpoint)["cfg"]["model"]
        regression_features = config.encoder_layers * config.encoder_attention_heads
        regression_weights = {
            "contact_head.regression.weight": torch.zeros(1, regression_features),
            "contact_head.regression.bias": torch.zeros(1),
        }
        torch.save({"model": regression_weights}, regression)
        model, alphabet = esm.pretrained.load_model_and_alphabet_local(str(checkpoint))
    regression.unlink()
    layers = model.num_layers
    model.eval()
    batch_converter = alphabet.get_batch_converter()
    vectors = []
    with torch.no_grad():
        for protein in proteins:
            _, strs, tokens = batch_converter([("protein", protein)])
            representations = model(tokens, repr_layers=[layers])["representations"][layers]
            truncate_len = min(1024, len(strs[0]))
            vectors.append(representations[0, 1 : truncate_len + 1].mean(0))
    return torch.stack(vectors).numpy()


def assert_same_vectors(actual: np.ndarray, expected: np.ndarray, max_abs_diff: float = 1e-4) -> None:
    assert actual.shape == expected.shape
    assert actual.dtype == np.float32
    cosine = (actual * expected).sum(1) / (np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosine.min() >= 0.9999
    assert np.abs(actual - expected).max() <= max_abs_diff


@pytest.fixture(scope="module")
def thirty_proteins_and_original_vectors(checkpoint) -> tuple[list[str], np.ndarray]:
    proteins = random_proteins(30)
    return proteins, original_embeddings(checkpoint, proteins)


@pytest.mark.parametrize("token_budget", [1, 100, 700, 2048, 100_000])
def test_batched_embeddings_match_the_original_one_at_a_time(thirty_proteins_and_original_vectors, embedder, token_budget):
    proteins, expected = thirty_proteins_and_original_vectors

    result = embedder.embed(proteins, token_budget=token_budget)

    # Batches run longest first, so matching row by row also shows the input order is restored.
    assert_same_vectors(result.vectors, expected)
    assert result.tokens == sum(len(protein) + 2 for protein in proteins)
    assert np.abs(expected - expected.mean(0)).max() > 0.1  # the tiny model tells proteins apart


def test_proteins_over_1024_residues_run_whole_and_average_their_first_1024(checkpoint, embedder):
    head = "".join(random.Random(5).choice(LETTERS) for _ in range(1024))
    long_protein = head + "W" * 76
    proteins = random_proteins(3, seed=3)
    proteins[1] = long_protein

    result = embedder.embed(proteins)

    assert_same_vectors(result.vectors, original_embeddings(checkpoint, proteins))
    _, _, tokens = esm.data.Alphabet.from_architecture("ESM-1b").get_batch_converter()([("", long_protein)])
    last = embedder.num_layers
    with torch.no_grad():
        representations = embedder.model(tokens, repr_layers=[last])["representations"][last][0]
    mean_of_all_residues = representations[1:1101].mean(0).numpy()
    assert np.abs(result.vectors[1] - mean_of_all_residues).max() > 1e-2
    truncated_before_the_model = embedder.embed([head]).vectors[0]
    assert np.abs(result.vectors[1] - truncated_before_the_model).max() > 1e-3


def test_empty_input_gives_no_vectors(embedder):
    result = embedder.embed([])
    assert result.vectors.shape == (0, 32) and result.vectors.dtype == np.float32
    assert result.tokens == 0


@pytest.mark.parametrize("protein", ["", "MK*V", "mkv"])
def test_letters_esm2_cannot_encode_are_refused(embedder, protein):
    with pytest.raises(ValueError, match="protein 1"):
        embedder.embed(["MKV", protein])


def test_identity_names_the_model_and_hashes_the_checkpoint(checkpoint, embedder):
    assert embedder.identity.name == "esm2_t2_tiny"
    assert embedder.identity.content_hash == hash_files([checkpoint])
    assert embedder.dim == 32


def test_identity_hash_follows_the_weights(tmp_path):
    first = write_tiny_esm2_checkpoint(tmp_path / "a" / "esm2_t2_tiny.pt", seed=0)
    same = write_tiny_esm2_checkpoint(tmp_path / "b" / "esm2_t2_tiny.pt", seed=0)
    other = write_tiny_esm2_checkpoint(tmp_path / "c" / "esm2_t2_tiny.pt", seed=1)

    hashes = [Esm2Embedder.from_source(str(path)).identity.content_hash for path in (first, same, other)]

    assert hashes[0] == hashes[1] != hashes[2]


def test_a_model_name_loads_from_the_torch_hub_cache(hub_dir, checkpoint, embedder):
    # No contact-regression file beside it: embeddings do not need one.
    cached = write_tiny_esm2_checkpoint(hub_dir / "checkpoints" / "esm2_t2_tiny.pt")

    by_name = Esm2Embedder.from_source("esm2_t2_tiny")

    assert by_name.identity.name == "esm2_t2_tiny"
    assert by_name.identity.content_hash == hash_files([cached])
    proteins = random_proteins(5)
    assert_same_vectors(by_name.embed(proteins).vectors, embedder.embed(proteins).vectors, 1e-6)


def test_a_model_name_missing_from_the_cache_is_downloaded_there(hub_dir, checkpoint, monkeypatch):
    requested = []

    def serve_tiny_checkpoint(url, timeout):
        requested.append(url)
        return io.BytesIO(checkpoint.read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", serve_tiny_checkpoint)

    loaded = Esm2Embedder.from_source("esm2_t2_tiny")

    assert requested == ["https://dl.fbaipublicfiles.com/fair-esm/models/esm2_t2_tiny.pt"]
    cached = hub_dir / "checkpoints" / "esm2_t2_tiny.pt"
    assert list(cached.parent.iterdir()) == [cached]
    assert loaded.identity.content_hash == hash_files([checkpoint])


def test_a_missing_model_name_says_where_it_looked(hub_dir):
    expected_path = hub_dir / "checkpoints" / "esm2_t6_8M_UR50D.pt"

    with pytest.raises(ModelNotFoundError) as raised:
        Esm2Embedder.from_source("esm2_t6_8M_UR50D")

    assert str(expected_path) in str(raised.value)
    assert "pass the path" in str(raised.value)
    assert list(expected_path.parent.iterdir()) == []  # no partial download left behind


@pytest.mark.parametrize("source", ["/nowhere/esm2_t6_8M_UR50D.pt", "not_a_model"])
def test_a_missing_file_or_unknown_name_is_not_found(source):
    with pytest.raises(ModelNotFoundError, match=source):
        Esm2Embedder.from_source(source)


class TouchOnUnpickle:
    """Pickles to a call that creates `marker`: stands for any code a malicious checkpoint could run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_in_the_legacy_format_loads_read_whole(tmp_path, checkpoint, embedder):
    """Checkpoints are memory-mapped; PyTorch's pre-zip format cannot be, and is read whole instead."""
    legacy = tmp_path / "esm2_t2_tiny.pt"
    torch.save(torch.load(checkpoint, weights_only=False), legacy, _use_new_zipfile_serialization=False)

    proteins = random_proteins(5)
    assert_same_vectors(Esm2Embedder.from_source(str(legacy)).embed(proteins).vectors, embedder.embed(proteins).vectors, 0.0)


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, zip_format):
    marker = tmp_path / "code-ran"
    malicious = tmp_path / "esm2_t2_tiny.pt"
    torch.save({"model": {}, "cfg": {"model": TouchOnUnpickle(marker)}}, malicious, _use_new_zipfile_serialization=zip_format)

    with pytest.raises(ModelFormatError, match="Refusing to load"):
        Esm2Embedder.from_source(str(malicious))
    assert not marker.exists()

    torch.load(malicious, weights_only=False)  # the payload is live: plain unpickling runs it
    assert marker.exists()


def write_esm1_style_checkpoint(path: Path) -> None:
    torch.save({"model": {}, "args": argparse.Namespace(arch="roberta_large")}, path)


def write_half_a_checkpoint(path: Path) -> None:
    content = write_tiny_esm2_checkpoint(path).read_bytes()
    path.write_bytes(content[: len(content) // 2])


def write_checkpoint_without_layer_norm(path: Path) -> None:
    data = torch.load(write_tiny_esm2_checkpoint(path), weights_only=False)
    del data["model"]["encoder.sentence_encoder.emb_layer_norm_after.weight"]
    torch.save(data, path)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (write_half_a_checkpoint, "not a readable PyTorch checkpoint"),
        (lambda path: torch.save({"weights": torch.zeros(2)}, path), "not a fair-esm checkpoint"),
        (write_esm1_style_checkpoint, "ESM-1"),
        (write_checkpoint_without_layer_norm, "emb_layer_norm_after.weight"),
    ],
)
def test_a_file_that_is_not_an_esm2_checkpoint_is_a_format_error(tmp_path, write, message):
    path = tmp_path / "esm2_t2_tiny.pt"
    write(path)
    with pytest.raises(ModelFormatError, match=message):
        Esm2Embedder.from_source(str(path))


class NonFiniteInHalfPrecision(torch.nn.Module):
    """The ESM-2 module, except that batches of `overflowing_length` tokens overflow in half precision."""

    def __init__(self, model: torch.nn.Module, overflowing_length: int):
        super().__init__()
        self.model = model
        self.overflowing_length = overflowing_length

    def forward(self, tokens, repr_layers):
        output = self.model(tokens, repr_layers=repr_layers)
        in_half_precision = self.model.embed_tokens.weight.dtype == torch.float16
        if in_half_precision and tokens.shape[1] == self.overflowing_length:
            for representations in output["representations"].values():
                representations[:, 1] = float("inf")
        return output


def test_half_precision_overflow_is_recomputed_in_fp32(checkpoint):
    proteins = random_proteins(12)
    token_counts = [len(protein) + 2 for protein in proteins]
    half = Esm2Embedder.from_source(str(checkpoint), dtype=torch.float16)
    half_vectors = half.embed(proteins, token_budget=700).vectors
    half_rounded_weights_in_fp32 = Esm2Embedder.from_source(str(checkpoint))
    half_rounded_weights_in_fp32.model.half().float()
    fp32_vectors = half_rounded_weights_in_fp32.embed(proteins).vectors
    assert_same_vectors(half_vectors, fp32_vectors, max_abs_diff=5e-2)
    assert np.abs(half_vectors - fp32_vectors).max() > 1e-4

    half.model = NonFiniteInHalfPrecision(half.model, overflowing_length=max(token_counts))
    recomputed = half.embed(proteins, token_budget=700).vectors

    overflowed = next(token_budget_batches(token_counts, 700))
    kept = np.setdiff1d(np.arange(len(proteins)), overflowed)
    assert_same_vectors(recomputed[overflowed], fp32_vectors[overflowed], max_abs_diff=1e-5)
    np.testing.assert_array_equal(recomputed[kept], half_vectors[kept])
    assert half.model.model.embed_tokens.weight.dtype == torch.float16
    # Back in half precision, a batch as long as the last one run in fp32 works as before.
    half.model = half.model.model
    longest = int(np.argmax(token_counts))
    assert_same_vectors(half.embed([proteins[longest]]).vectors, half_vectors[[longest]], max_abs_diff=1e-2)


class OutOfMemoryAbove(torch.nn.Module):
    """The ESM-2 module on a device that only fits `max_batch` proteins at a time."""

    def __init__(self, model: torch.nn.Module, max_batch: int):
        super().__init__()
        self.model = model
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []

    def forward(self, tokens, repr_layers):
        self.batch_sizes.append(len(tokens))
        if len(tokens) > self.max_batch:
            raise torch.cuda.OutOfMemoryError("simulated out of memory")
        return self.model(tokens, repr_layers=repr_layers)


def test_out_of_memory_splits_the_batch(checkpoint, embedder):
    proteins = random_proteins(10)
    expected = embedder.embed(proteins).vectors
    small_device = Esm2Embedder.from_source(str(checkpoint))
    small_device.model = OutOfMemoryAbove(small_device.model, max_batch=3)

    result = small_device.embed(proteins, token_budget=100_000)

    assert_same_vectors(result.vectors, expected, max_abs_diff=1e-5)
    assert small_device.model.batch_sizes[0] == 10
    assert sum(size for size in small_device.model.batch_sizes if size <= 3) == 10

    small_device.model.max_batch = 0
    with pytest.raises(torch.cuda.OutOfMemoryError):
        small_device.embed(proteins[:1])


@pytest.mark.parametrize(
    "environment", [{}, {"XDG_CACHE_HOME": "/cache/xdg"}, {"TORCH_HOME": "~/models/torch"}, {"TORCH_HOME": "/t", "XDG_CACHE_HOME": "/x"}]
)
def test_a_model_name_is_looked_up_where_torch_hub_keeps_it(environment, monkeypatch):
    """hub_checkpoint_path follows torch.hub.get_dir's rule without importing torch."""
    for name in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert hub_checkpoint_path("esm2_t6_8M_UR50D") == Path(torch.hub.get_dir()) / "checkpoints" / "esm2_t6_8M_UR50D.pt"
