"""Compiled layers compute what the uncompiled ones do, and never stop a step where compiling fails."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from virnucpro_assets.demo.models import random_esm2
from virnucpro_assets.models.esm2 import Esm2Embedder
from virnucpro_assets.models.identity import ModelIdentity

PROTEINS = ["MKTAYIAKQR", "MKTAYIAKQRQISFVKSHFSRQ", "WWKL"]


def embedder(model, compiled: bool) -> Esm2Embedder:
    return Esm2Embedder(model, model.alphabet, ModelIdentity("tiny", ""), compiled=compiled)


@pytest.mark.long(20)
def test_compiled_layers_give_the_uncompiled_vectors():
    model = random_esm2(num_layers=2, embed_dim=32, attention_heads=4, seed=5)
    eager = embedder(model, compiled=False).embed(PROTEINS).vectors
    compiled = embedder(model, compiled=True)
    assert all(hasattr(layer, "_compiled_call_impl") and layer._compiled_call_impl for layer in compiled.model.layers)
    np.testing.assert_allclose(compiled.embed(PROTEINS).vectors, eager, atol=1e-5)


def test_a_failing_compiler_falls_back_to_the_uncompiled_layers(monkeypatch):
    model = random_esm2(num_layers=2, embed_dim=32, attention_heads=4, seed=5)
    eager = embedder(model, compiled=False).embed(PROTEINS).vectors

    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C compiler on this machine")

    compiled = embedder(model, compiled=True)
    for layer in compiled.model.layers:
        layer.compile(dynamic=True, backend=broken_backend)
    try:
        vectors = compiled.embed(PROTEINS).vectors
    finally:
        torch._dynamo.reset()
    np.testing.assert_allclose(vectors, eager, atol=1e-6)


def test_the_warm_up_imports_the_compiler_in_the_background():
    script = (
        "import sys; from virnucpro_assets.models import compilation as c; c.start_warm_up(); c.start_warm_up();"
        "import threading; warm = [t for t in threading.enumerate() if t.name == 'torch.compile warm-up'];"
        "assert len(warm) == 1, warm; warm[0].join();"
        "assert 'torch._inductor.compile_fx' in sys.modules and 'torch._dynamo' in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and not done.stderr, done.stderr


def test_compiling_waits_for_the_warm_up(monkeypatch):
    from virnucpro_assets.models import compilation

    order = []
    release = threading.Event()
    monkeypatch.setattr(compilation, "_warm_up", None)
    monkeypatch.setattr(compilation, "_import_compiler", lambda: (release.wait(30), order.append("warm-up")))
    compilation.start_warm_up()
    model = random_esm2(num_layers=1, embed_dim=32, attention_heads=4, seed=5)
    threading.Timer(0.2, release.set).start()
    compilation.compile_layers(model.layers)
    order.append("compiled")
    assert order == ["warm-up", "compiled"]
