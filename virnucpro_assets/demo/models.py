"""Tiny deterministic models in the real on-disk formats, for the demo, the tests and benchmarks.

They go through every loader and asset of the pipeline offline; their weights are random, so their
predictions mean nothing biologically. The same arguments always give the same files.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import safetensors.torch
import tokenizers
import torch
from esm.model.esm2 import ESM2

from virnucpro_assets.demo.reads import load_genomes
from virnucpro_assets.models.classifier import Classifier, load_classifier
from virnucpro_assets.models.classifier.mlp import (
    CLASS_LABELS,
    DEFAULT_BATCH_NORM_EPS,
    FEATURE_WIDTH,
    HIDDEN_WIDTH,
    ClassifierWeights,
    check_chunk_length,
)
from virnucpro_assets.models.classifier.native import write_native
from virnucpro_assets.models.dnabert2 import DnabertConfig, DnabertModel
from virnucpro_assets.models.dnabert2.loading import CONFIG_FILE, TOKENIZER_FILE, WEIGHT_FILES


@dataclass(frozen=True)
class DemoModels:
    dnabert: Path  # Hugging Face-style directory
    esm2: Path  # fair-esm checkpoint file
    classifier: Path  # native .safetensors (+ .json)


def build_demo_models(directory: Path, genomes: list[Path], chunk_length: int) -> DemoModels:
    """The demo's three models under `directory`, each written on first use."""
    models = DemoModels(
        dnabert=directory / "dnabert2_demo",
        esm2=directory / "esm2_demo.pt",
        classifier=directory / f"demo_classifier_{chunk_length}.safetensors",
    )
    hidden, embed_dim = 48, 32
    if not (models.dnabert / "model.safetensors").exists():
        sequences = [sequence[:20000] for _, sequence in load_genomes(genomes)]
        write_tiny_dnabert(models.dnabert, sequences, hidden_size=hidden, seed=1)
    if not models.esm2.exists():
        write_tiny_esm2_checkpoint(models.esm2, num_layers=2, embed_dim=embed_dim, attention_heads=4, seed=2)
    if not models.classifier.exists():
        # Seed 11 happens to split the demo reads between both classes, which shows both in the report.
        write_demo_classifier(models.classifier, chunk_length, seed=11, feature_width=hidden + embed_dim)
    return models


SPECIAL_TOKENS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")  # ids 0..4, as in DNABERT-2


def write_tiny_dnabert(
    directory: str | Path,
    training_text: Sequence[str],
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 256,
    seed: int = 0,
    intermediate_size: int | None = None,
) -> Path:
    """Write a small random DNABERT-2 in the Hugging Face layout (config.json, model.safetensors,
    tokenizer.json), for the demo, tests and benchmarks. Its BPE tokenizer is trained on
    `training_text` with DNABERT-2's special tokens and [CLS] ... [SEP] template; it is not the real
    vocabulary, and the weights mean nothing. The MLP is 2 x hidden wide unless `intermediate_size`
    says otherwise (DNABERT-S: hidden 768, 12 layers, 12 heads, intermediate 3072, vocabulary 4096)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tokenizer.train_from_iterator(list(training_text), trainer)
    tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    tokenizer.save(str(directory / TOKENIZER_FILE))

    config = DnabertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size or 2 * hidden_size,
        vocab_size=vocab_size,
    )
    generator = torch.Generator().manual_seed(seed)
    model = DnabertModel(config, with_pooler=False)
    state = {}
    for name, parameter in model.state_dict().items():
        noise = torch.randn(parameter.shape, generator=generator)
        if name.endswith("LayerNorm.weight") or name.endswith("layernorm.weight"):
            state[name] = 1 + 0.1 * noise
        elif parameter.ndim > 1:
            state[name] = noise / parameter.shape[-1] ** 0.5
        else:
            state[name] = 0.02 * noise
    safetensors.torch.save_file(state, directory / WEIGHT_FILES[0])
    fields_written = {f.name: getattr(config, f.name) for f in fields(DnabertConfig)}
    (directory / CONFIG_FILE).write_text(json.dumps({"model_type": "bert", **fields_written}, indent=2) + "\n")
    return directory


def random_esm2(
    num_layers: int = 2, embed_dim: int = 32, attention_heads: int = 4, seed: int = 0, device: str | torch.device = "cpu"
) -> ESM2:
    """fair-esm's ESM2 module with random weights scaled to keep activations near unit size, built
    on `device` (a 3B-sized one in seconds on a GPU). The same arguments give the same weights."""
    device = torch.device(device)
    generator = torch.Generator(device).manual_seed(seed)
    # ESM2's default initialisation draws from the global RNG, which is left as it was.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), device:
        model = ESM2(num_layers, embed_dim, attention_heads, alphabet="ESM-1b", token_dropout=True)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator, device=device)
            if parameter.ndim > 1:
                parameter.copy_(noise / parameter.shape[-1] ** 0.5)
            elif name.endswith("weight"):
                parameter.copy_(1 + 0.2 * noise)  # layer norm gains
            else:
                parameter.copy_(0.2 * noise)
    return model.eval()


def write_tiny_esm2_checkpoint(
    path: str | Path,
    num_layers: int = 2,
    embed_dim: int = 32,
    attention_heads: int = 4,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Path:
    """Write a random ESM-2 (`random_esm2`) in fair-esm's hub checkpoint format, for the demo,
    tests and benchmarks (36 layers, 2560 wide, 40 heads is the 3B shape; the hub stores fp16).

    Like the hub files: {"model": state dict under fairseq's "encoder.sentence_encoder." /
    "encoder." prefixes, "cfg": {"model": argparse.Namespace(...)}}, with the contact-regression
    weights left out (fair-esm ships those in a separate file). The same arguments give the same bytes.
    """
    model = random_esm2(num_layers, embed_dim, attention_heads, seed, device)
    hub_state = {
        ("encoder." if key.startswith("lm_head.") else "encoder.sentence_encoder.") + key: tensor.to("cpu", dtype)
        for key, tensor in model.state_dict().items()
        if not key.startswith("contact_head.")
    }
    config = argparse.Namespace(
        encoder_layers=num_layers,
        encoder_embed_dim=embed_dim,
        encoder_attention_heads=attention_heads,
        token_dropout=True,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": hub_state, "cfg": {"model": config}}, path)
    return path


def write_demo_classifier(path: str | Path, chunk_length: int, seed: int, feature_width: int = FEATURE_WIDTH) -> Classifier:
    """Write a classifier with random weights drawn from `seed` in the native format and load it.

    For demonstrations and tests of the pipeline's plumbing only: its weights were never trained,
    so its predictions mean nothing biologically. The same seed always gives the same files.
    """
    check_chunk_length(chunk_length, "chunk_length")
    rng = np.random.default_rng(seed)

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(values.astype(np.float32))

    def xavier_uniform(fan_out: int, fan_in: int) -> torch.Tensor:
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # the original's init for both Linear layers
        return tensor(rng.uniform(-bound, bound, size=(fan_out, fan_in)))

    weights = ClassifierWeights(
        hidden_weight=xavier_uniform(HIDDEN_WIDTH, feature_width),
        hidden_bias=tensor(rng.normal(0.0, 0.01, HIDDEN_WIDTH)),
        norm_weight=tensor(rng.uniform(0.8, 1.2, HIDDEN_WIDTH)),
        norm_bias=tensor(rng.normal(0.0, 0.1, HIDDEN_WIDTH)),
        norm_running_mean=tensor(rng.normal(0.0, 0.05, HIDDEN_WIDTH)),
        norm_running_var=tensor(rng.uniform(0.05, 0.15, HIDDEN_WIDTH)),
        norm_eps=DEFAULT_BATCH_NORM_EPS,
        output_weight=xavier_uniform(len(CLASS_LABELS), HIDDEN_WIDTH),
        output_bias=tensor(np.zeros(len(CLASS_LABELS))),
    )
    description = f"random weights (seed {seed}) for demonstrations; its predictions mean nothing biologically"
    write_native(weights, chunk_length, Path(path), description)
    return load_classifier(path, chunk_length)
