"""The VirNucPro classifier (mlp) and its two on-disk formats, both read by `load_classifier`:

- legacy: the original's `torch.save` files (`300_model.pth`, `500_model.pth`), read by a
  restricted unpickler that runs nothing from the file.
- native: `<name>.safetensors` next to `<name>.json`; `save_classifier` writes it, and converting
  a legacy file is loading it and saving it (`convert_classifier`).

The chunk length (300 or 500) a checkpoint was trained for travels with it: from the native JSON,
or from a legacy file name starting `300_` / `500_`, or else from the caller.
"""

from __future__ import annotations

from pathlib import Path

from virnucpro_assets.models.classifier.legacy import load_legacy
from virnucpro_assets.models.classifier.mlp import CLASS_LABELS, FEATURE_WIDTH, Classifier, ClassifierWeights
from virnucpro_assets.models.classifier.native import NATIVE_SUFFIXES, load_native, write_native

__all__ = [
    "CLASS_LABELS",
    "FEATURE_WIDTH",
    "Classifier",
    "ClassifierWeights",
    "convert_classifier",
    "load_classifier",
    "save_classifier",
]


def load_classifier(path: str | Path, chunk_length: int | None = None) -> Classifier:
    """Load a classifier: native when `path` ends in .safetensors or .json, legacy torch.save otherwise.

    `chunk_length` is the chunk length the caller will use. It must agree with the one the file
    records (native JSON, or a legacy name starting `300_`/`500_`); for a legacy file whose name
    says nothing it is required.
    """
    path = Path(path)
    if path.suffix in NATIVE_SUFFIXES:
        return load_native(path, chunk_length)
    return load_legacy(path, chunk_length)


def save_classifier(classifier: Classifier, path: str | Path, description: str = "") -> None:
    """Write `classifier` in the native format: `path` (must end in .safetensors) and the JSON
    next to it. The files are loaded with `load_classifier(path)`; their identity is their own
    hash, not the identity of the file `classifier` was loaded from."""
    write_native(classifier.weights, classifier.chunk_length, Path(path), description)


def convert_classifier(source: str | Path, destination: str | Path, chunk_length: int | None = None) -> Classifier:
    """Convert a legacy checkpoint (e.g. 500_model.pth) to the native format and load the result."""
    legacy = load_classifier(source, chunk_length)
    description = f"converted from {Path(source).name} (sha256 {legacy.identity.content_hash})"
    save_classifier(legacy, destination, description)
    return load_classifier(destination, legacy.chunk_length)
