"""The classifier's native format: `<name>.safetensors` (the eight tensors) next to `<name>.json`
(format version, chunk length, layer list with the BatchNorm eps, a description). Nothing in it is
executable."""

from __future__ import annotations

import json
from pathlib import Path

import safetensors.torch
from safetensors import SafetensorError

from virnucpro_assets.errors import ConfigurationError, ModelFormatError
from virnucpro_assets.models.classifier.mlp import (
    CLASS_LABELS,
    HIDDEN_WIDTH,
    Classifier,
    ClassifierWeights,
    check_chunk_length,
    layers_of_state_dict,
    not_found,
    resolve_chunk_length,
    weights_from_layers,
)
from virnucpro_assets.models.identity import ModelIdentity, hash_files
from virnucpro_assets.storage.store import atomic_path

NATIVE_FORMAT = "virnucpro-classifier"
NATIVE_FORMAT_VERSION = 1
NATIVE_SUFFIXES = (".safetensors", ".json")

# Tensor names in the native safetensors file -> ClassifierWeights fields.
_NATIVE_TENSOR_FIELDS = {
    "hidden_layer.weight": "hidden_weight",
    "hidden_layer.bias": "hidden_bias",
    "batch_norm.weight": "norm_weight",
    "batch_norm.bias": "norm_bias",
    "batch_norm.running_mean": "norm_running_mean",
    "batch_norm.running_var": "norm_running_var",
    "output_layer.weight": "output_weight",
    "output_layer.bias": "output_bias",
}


def _native_paths(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.stem + ".safetensors"), path.with_name(path.stem + ".json")


def write_native(weights: ClassifierWeights, chunk_length: int, path: Path, description: str) -> None:
    if path.suffix != ".safetensors":
        raise ValueError(f"a native classifier is written to <name>.safetensors (plus <name>.json), got {path}")
    weights_path, sidecar_path = _native_paths(path)
    tensors = {name: getattr(weights, field).contiguous() for name, field in _NATIVE_TENSOR_FIELDS.items()}
    sidecar = {
        "format": NATIVE_FORMAT,
        "format_version": NATIVE_FORMAT_VERSION,
        "chunk_length": chunk_length,
        "layers": [
            {"name": "hidden_layer", "type": "Linear", "in_features": weights.hidden_weight.shape[1], "out_features": HIDDEN_WIDTH},
            {"name": "batch_norm", "type": "BatchNorm1d", "num_features": HIDDEN_WIDTH, "eps": weights.norm_eps},
            {"name": "relu", "type": "ReLU"},
            {"name": "dropout", "type": "Dropout", "p": 0.5},
            {"name": "output_layer", "type": "Linear", "in_features": HIDDEN_WIDTH, "out_features": len(CLASS_LABELS)},
        ],
        "description": description,
    }
    with atomic_path(weights_path) as temporary:
        safetensors.torch.save_file(tensors, temporary)
    with atomic_path(sidecar_path) as temporary:
        temporary.write_text(json.dumps(sidecar, indent=2) + "\n")


def load_native(path: Path, chunk_length: int | None) -> Classifier:
    weights_path, sidecar_path = _native_paths(path)
    for required in (weights_path, sidecar_path):
        if not required.is_file():
            raise not_found(required)
    recorded_chunk_length, batch_norm_eps, feature_width = _read_sidecar(sidecar_path)
    try:
        tensors = safetensors.torch.load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFormatError(f"{weights_path} is not a readable safetensors file: {error}") from error
    weights = weights_from_layers(layers_of_state_dict(tensors), batch_norm_eps, weights_path, feature_width)
    return Classifier(
        weights=weights,
        chunk_length=resolve_chunk_length(weights_path, recorded_chunk_length, f"per {sidecar_path.name}", chunk_length),
        identity=ModelIdentity(weights_path.name, hash_files([weights_path, sidecar_path])),
    )


def _read_sidecar(path: Path) -> tuple[int, float, int]:
    """The chunk length, BatchNorm eps and input width recorded in a native classifier's JSON."""
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFormatError(f"{path} is not readable JSON: {error}") from error
    if not isinstance(sidecar, dict) or sidecar.get("format") != NATIVE_FORMAT:
        raise ModelFormatError(f'{path} does not describe a VirNucPro classifier (no "format": "{NATIVE_FORMAT}")')
    if sidecar.get("format_version") != NATIVE_FORMAT_VERSION:
        raise ModelFormatError(f"{path} has format_version {sidecar.get('format_version')!r}; this version reads {NATIVE_FORMAT_VERSION}")
    try:
        chunk_length = check_chunk_length(sidecar.get("chunk_length"), f"chunk_length in {path}")
    except ConfigurationError as error:
        raise ModelFormatError(str(error)) from None
    layers = sidecar.get("layers", [])
    norms = [layer for layer in layers if isinstance(layer, dict) and layer.get("type") == "BatchNorm1d"]
    eps = norms[0].get("eps") if len(norms) == 1 else None
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ModelFormatError(f"{path} must list exactly one BatchNorm1d layer with a non-negative eps")
    width = next((layer.get("in_features") for layer in layers if isinstance(layer, dict) and layer.get("name") == "hidden_layer"), None)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ModelFormatError(f"{path} must give the hidden_layer's in_features as a positive whole number")
    return chunk_length, float(eps), width
