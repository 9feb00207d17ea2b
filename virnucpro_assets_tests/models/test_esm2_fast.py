"""FastEsm2 against fair-esm's own ESM2 module on the same tiny random weights, in fp32 on the CPU."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from virnucpro_assets.demo.models import random_esm2, write_tiny_esm2_checkpoint
from virnucpro_assets.errors import ModelFormatError
from virnucpro_assets.models.esm2 import Esm2Embedder, FastEsm2

LETTERS = "ACDEFGHIKLMNPQRSTVWYXBUZO"


@pytest.fixture(scope="module")
def fair_esm():
    return random_esm2(num_layers=3, embed_dim=48, attention_heads=6, seed=4)


@pytest.fixture(scope="module")
def fast(fair_esm):
    return FastEsm2.from_fair_esm(fair_esm)


def tokens_of(fair_esm, proteins: list[str]) -> torch.Tensor:
    _, _, tokens = fair_esm.alphabet.get_batch_converter()([("", protein) for protein in proteins])
    return tokens


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    actual, expected = actual.flatten(0, -2).double(), expected.flatten(0, -2).double()
    assert (actual - expected).abs().max() <= 1e-4
    nonzero = expected.norm(dim=-1) > 0  # <mask> positions are zero after the embedding
    assert torch.nn.functional.cosine_similarity(actual[nonzero], expected[nonzero], dim=-1).min() >= 0.9999


@pytest.mark.parametrize(
    "proteins",
    [
        ["MKTAYIAKQR"],  # one protein, no padding: SDPA gets no mask
        ["M", "MKTAYIAKQRQISFVKSHFSRQ" * 4, "WWXBUZO"],  # padding, rare letters
        ["MKTA<mask>IAKQR<mask>", "MKTAYIAKQRQ"],  # token-dropout rescaling with a nonzero mask ratio
    ],
)
def test_every_layer_matches_fair_esm(fair_esm, fast, proteins):
    tokens = tokens_of(fair_esm, proteins)
    layers = list(range(fair_esm.num_layers + 1))
    with torch.no_grad():
        expected = fair_esm(tokens, repr_layers=layers)["representations"]
        actual = fast(tokens, repr_layers=layers)["representations"]
    real = tokens.ne(fair_esm.padding_idx)  # what fair-esm leaves at padded positions is not specified
    for layer in layers:
        assert_close(actual[layer][real], expected[layer][real])


def test_long_and_random_batches_match_fair_esm(fair_esm, fast):
    rng = random.Random(3)
    proteins = ["".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 400))) for _ in range(12)]
    tokens = tokens_of(fair_esm, proteins)
    last = fair_esm.num_layers
    with torch.no_grad():
        expected = fair_esm(tokens, repr_layers=[last])["representations"][last]
        actual = fast(tokens, repr_layers=[last])["representations"][last]
    real = tokens.ne(fair_esm.padding_idx)
    assert_close(actual[real], expected[real])


def test_the_embedder_runs_the_fast_model_read_straight_from_the_checkpoint(tmp_path):
    path = write_tiny_esm2_checkpoint(tmp_path / "tiny.pt", num_layers=2, embed_dim=32, attention_heads=4, seed=5)
    embedder = Esm2Embedder.from_source(str(path))
    assert isinstance(embedder.model, FastEsm2)
    reference = FastEsm2.from_fair_esm(random_esm2(2, 32, 4, seed=5))
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(embedder.model.state_dict()[name], tensor, rtol=0, atol=0)


def test_weights_that_do_not_fit_the_config_are_a_format_error(tmp_path):
    path = write_tiny_esm2_checkpoint(tmp_path / "tiny.pt")
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["cfg"]["model"].encoder_embed_dim = 64
    torch.save(checkpoint, path)
    with pytest.raises(ModelFormatError, match="does not hold a loadable ESM-2 model"):
        Esm2Embedder.from_source(str(path))


def test_embedding_does_not_depend_on_the_batch(fair_esm):
    embedder = Esm2Embedder(fair_esm, fair_esm.alphabet, identity=None)
    proteins = ["MKTAYIAKQR", "MK", "W" * 90, "ACDEFGHIKLMNPQRSTVWY"]
    together = embedder.embed(proteins, token_budget=10_000).vectors
    alone = np.stack([embedder.embed([protein]).vectors[0] for protein in proteins])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_tanh_gelu_path_stays_within_half_precision_of_fair_esm(fair_esm):
    # The GPU's half-precision default (bias and GELU in cuBLASLt's epilogue) computes GELU's tanh
    # approximation; on the CPU the same approximation runs as F.gelu(approximate="tanh").
    approximate = FastEsm2.from_fair_esm(fair_esm)
    approximate.approximate_gelu = True
    tokens = tokens_of(fair_esm, ["MKTAYIAKQRQISFVKSHFSRQ" * 3, "MKTAYIAKQR"])
    last = fair_esm.num_layers
    with torch.no_grad():
        expected = fair_esm(tokens, repr_layers=[last])["representations"][last]
        actual = approximate(tokens, repr_layers=[last])["representations"][last]
    real = tokens.ne(fair_esm.padding_idx)
    difference = (actual[real] - expected[real]).abs().max()
    assert 0 < difference <= 1e-2  # the approximation ran, and moved the vectors only slightly
    assert torch.nn.functional.cosine_similarity(actual[real], expected[real], dim=-1).min() >= 0.9999


@pytest.mark.skipif(not torch.cuda.is_available(), reason="cuBLASLt's GELU epilogue needs a GPU")
def test_gelu_epilogue_is_the_tanh_approximation():
    from virnucpro_assets.models.esm2.architecture import gelu_linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 256).cuda().half()
    x = torch.randn(3, 7, 64, device="cuda", dtype=torch.half)
    fused = gelu_linear(x, linear, approximate=True)
    reference = torch.nn.functional.gelu(linear(x).float(), approximate="tanh")
    torch.testing.assert_close(fused.float(), reference, rtol=2e-3, atol=2e-3)
