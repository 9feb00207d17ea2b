"""Tiny deterministic demo models, built on first use in the real on-disk formats.

They exercise every loader and asset of the pipeline offline; their weights are random, so the
demo's predictions mean nothing biologically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from virnucpro_assets.demo.reads import load_genomes


@dataclass(frozen=True)
class DemoModels:
    dnabert: Path  # Hugging Face-style directory
    esm2: Path  # fair-esm checkpoint file
    classifier: Path  # native .safetensors (+ .json)


def build_demo_models(directory: Path, genomes: list[Path], chunk_length: int) -> DemoModels:
    from virnucpro_assets.models.classifier import write_demo_classifier
    from virnucpro_assets.models.dnabert2 import write_tiny_dnabert
    from virnucpro_assets.models.esm2 import write_tiny_esm2_checkpoint

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
