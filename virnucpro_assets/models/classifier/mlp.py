"""The VirNucPro classifier: Linear(3328, 512) -> BatchNorm1d(512) -> ReLU -> Dropout(0.5) ->
Linear(512, 2) in eval mode, softmax over the two logits (score1 = P(others), score2 = P(virus)).

Also what every on-disk format shares: the weights found by the structure of a state dict (the
submodule names vary between training scripts), and the chunk length (300 or 500) a checkpoint
was trained for, which travels with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from virnucpro_assets.errors import ConfigurationError, ModelFormatError, ModelNotFoundError
from virnucpro_assets.models.identity import ModelIdentity
from virnucpro_assets.sequences.chunking import SUPPORTED_CHUNK_LENGTHS

FEATURE_WIDTH = 3328  # DNABERT-S 768 | ESM-2 2560
HIDDEN_WIDTH = 512
CLASS_LABELS = ("others", "virus")
DEFAULT_BATCH_NORM_EPS = 1e-5  # nn.BatchNorm1d's default; a bare state_dict does not record eps

# Features are scored in blocks of this many rows, the last one padded with zeros. CPU matrix
# kernels are chosen by the number of rows, and different kernels round differently in the last
# bits; fixed-size blocks make a pair's scores independent of how many pairs are scored with it
# (shard sizes, re-runs). 256 is also the original's batch size. A block's products are also split
# among torch's threads, and the split changes the sums' order: each block is computed by one thread
# (blocks in parallel, one per thread torch was given), so the scores do not depend on the process's
# thread count either (a run's process, a Celery worker's forked child, a machine with more cores).
_SCORING_BLOCK_ROWS = 256


@dataclass(frozen=True)
class ClassifierWeights:
    """The MLP's tensors, fp32 on CPU. Dropout has none and is the identity in eval mode."""

    hidden_weight: torch.Tensor  # [512, 3328]
    hidden_bias: torch.Tensor  # [512]
    norm_weight: torch.Tensor  # [512]
    norm_bias: torch.Tensor  # [512]
    norm_running_mean: torch.Tensor  # [512]
    norm_running_var: torch.Tensor  # [512]
    norm_eps: float
    output_weight: torch.Tensor  # [2, 512]
    output_bias: torch.Tensor  # [2]


@dataclass(frozen=True)
class Classifier:
    """The classifier for one chunk length, with the identity (name + file hash) of its weights."""

    weights: ClassifierWeights
    chunk_length: int
    identity: ModelIdentity

    @property
    def feature_width(self) -> int:
        """3328 for the published classifiers; smaller for demo classifiers of tiny models."""
        return self.weights.hidden_weight.shape[1]

    def score(self, features: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Score [N, 3328] merged features in fp32 on CPU.

        Returns the softmax scores [N, 2] as float32 (column 0 = score1 = P(others), column 1 =
        score2 = P(virus)) and one prediction per row. The prediction is the argmax of the softmax
        row, as the original's `torch.max(probabilities, 1)`: the first maximum wins, so a tie
        (including logits so close that both probabilities round to 0.5) is 'others'.
        """
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.feature_width:
            raise ValueError(
                f"the classifier takes features of shape [N, {self.feature_width}] (DNABERT-S then "
                f"ESM-2 vector per pair, 768 + 2560 for the published models), got shape {list(features.shape)}"
            )
        row_count = len(features)
        scores = np.empty((row_count, len(CLASS_LABELS)), dtype=np.float32)

        def score_block(start: int) -> None:
            rows = min(_SCORING_BLOCK_ROWS, row_count - start)
            block = np.zeros((_SCORING_BLOCK_ROWS, self.feature_width), dtype=np.float32)
            block[:rows] = features[start : start + rows]
            with torch.inference_mode():
                scores[start : start + rows] = self._softmax(torch.from_numpy(block))[:rows].numpy()

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(score_block, range(0, row_count, _SCORING_BLOCK_ROWS)))
        finally:
            torch.set_num_threads(threads)
        predictions = [CLASS_LABELS[index] for index in np.argmax(scores, axis=1)]
        return scores, predictions

    def _softmax(self, features: torch.Tensor) -> torch.Tensor:
        weights = self.weights
        hidden = F.linear(features, weights.hidden_weight, weights.hidden_bias)
        hidden = F.batch_norm(
            hidden,
            weights.norm_running_mean,
            weights.norm_running_var,
            weights.norm_weight,
            weights.norm_bias,
            training=False,
            eps=weights.norm_eps,
        )
        hidden = F.relu(hidden)  # Dropout(0.5) is the identity in eval mode
        logits = F.linear(hidden, weights.output_weight, weights.output_bias)
        return F.softmax(logits, dim=1)


def not_found(path: Path) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"classifier not found: {path} {'is not a file' if path.exists() else 'does not exist'}. "
        "Provide the published 300_model.pth or "
        "500_model.pth from github.com/Li-Jing-1997/VirNucPro (the one matching the chunk length), "
        "or a classifier in the native format (<name>.safetensors next to <name>.json)"
    )


def check_chunk_length(value: object, source: str) -> int:
    if isinstance(value, bool) or value not in SUPPORTED_CHUNK_LENGTHS:
        raise ConfigurationError(f"{source}={value!r}: VirNucPro's classifiers exist for chunk lengths 300 and 500 only")
    return int(value)


def resolve_chunk_length(path: Path, recorded: int | None, recorded_where: str, requested: int | None) -> int:
    if requested is None:
        if recorded is None:
            raise ConfigurationError(
                f"cannot tell which chunk length {path} was trained for: its name does not start with "
                "300_ or 500_ like the published checkpoints; give the chunk length (300 or 500) explicitly"
            )
        return recorded
    requested = check_chunk_length(requested, "chunk_length")
    if recorded is not None and recorded != requested:
        raise ConfigurationError(
            f"{path} is a classifier for {recorded}-letter chunks ({recorded_where}), but chunk length "
            f"{requested} was asked for: use chunk length {recorded}, or the classifier trained for {requested}"
        )
    return requested


# --- finding the MLP's weights by structure ------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    name: str  # dotted path of the submodule or state_dict prefix; "" for the top level
    kind: str | None  # the pickled class's name, when known
    tensors: dict[str, torch.Tensor]
    eps: object = None  # a pickled BatchNorm's eps; None when the file does not record it

    def describe(self) -> str:
        shapes = ", ".join(f"{key} {'x'.join(map(str, tensor.shape)) or 'scalar'}" for key, tensor in self.tensors.items())
        kind = f" ({self.kind})" if self.kind else ""
        return f"{self.name or '(top level)'}{kind}: {shapes}"


def layers_of_state_dict(tensors: Mapping[str, torch.Tensor]) -> list[Layer]:
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        layer_name, _, tensor_name = key.rpartition(".")
        grouped.setdefault(layer_name, {})[tensor_name] = tensor
    return [Layer(name, None, layer_tensors) for name, layer_tensors in grouped.items()]


def _float_shape(tensor: torch.Tensor) -> tuple[int, ...] | None:
    return tuple(tensor.shape) if tensor.is_floating_point() else None


def _is_linear(layer: Layer, in_features: int, out_features: int) -> bool:
    return (
        set(layer.tensors) == {"weight", "bias"}
        and _float_shape(layer.tensors["weight"]) == (out_features, in_features)
        and _float_shape(layer.tensors["bias"]) == (out_features,)
    )


def _is_batch_norm(layer: Layer, features: int) -> bool:
    statistics = {"weight", "bias", "running_mean", "running_var"}
    return statistics <= set(layer.tensors) <= statistics | {"num_batches_tracked"} and all(
        _float_shape(layer.tensors[key]) == (features,) for key in statistics
    )


def _fp32(tensor: torch.Tensor) -> torch.Tensor:
    # A fresh contiguous fp32 copy, detached from whatever the file attached to the original.
    return tensor.detach().to(torch.float32, copy=True).contiguous()


def weights_from_layers(layers: list[Layer], batch_norm_eps: float, path: Path, feature_width: int = FEATURE_WIDTH) -> ClassifierWeights:
    hidden = [layer for layer in layers if _is_linear(layer, feature_width, HIDDEN_WIDTH)]
    norm = [layer for layer in layers if _is_batch_norm(layer, HIDDEN_WIDTH)]
    output = [layer for layer in layers if _is_linear(layer, HIDDEN_WIDTH, len(CLASS_LABELS))]
    if not (len(layers) == 3 and len(hidden) == len(norm) == len(output) == 1):
        found = "; ".join(layer.describe() for layer in layers) or "no tensors at all"
        raise ModelFormatError(
            f"{path} does not hold the VirNucPro classifier, whose layers are Linear({feature_width}->512) "
            f"[weight 512x{feature_width}, bias 512], BatchNorm1d(512) [weight, bias, running_mean, running_var 512] "
            f"and Linear(512->2) [weight 2x512, bias 2]; found {found}"
        )
    eps = batch_norm_eps if norm[0].eps is None else norm[0].eps
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ModelFormatError(f"{path}: the BatchNorm layer's eps is {eps!r}, not a non-negative number")
    hidden_layer, norm_layer, output_layer = hidden[0].tensors, norm[0].tensors, output[0].tensors
    return ClassifierWeights(
        hidden_weight=_fp32(hidden_layer["weight"]),
        hidden_bias=_fp32(hidden_layer["bias"]),
        norm_weight=_fp32(norm_layer["weight"]),
        norm_bias=_fp32(norm_layer["bias"]),
        norm_running_mean=_fp32(norm_layer["running_mean"]),
        norm_running_var=_fp32(norm_layer["running_var"]),
        norm_eps=float(eps),
        output_weight=_fp32(output_layer["weight"]),
        output_bias=_fp32(output_layer["bias"]),
    )
