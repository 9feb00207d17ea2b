"""The VirNucPro classifier: Linear(3328, 512) -> BatchNorm1d(512) -> ReLU -> Dropout(0.5) ->
Linear(512, 2) in eval mode, softmax over the two logits (score1 = P(others), score2 = P(virus)).

Two on-disk formats are read by `load_classifier`:

- legacy: what the original's train.py writes with `torch.save(model)` (the published
  `300_model.pth` / `500_model.pth`): a pickled `__main__.MLPClassifier` module. A plain
  `state_dict` saved with `torch.save` is read too. Pickles can run arbitrary code, so these files
  are read by a restricted unpickler that can only build what such a checkpoint holds (see
  `_allowed_globals`): modules become inert records of their attributes and tensors are read
  from the zip's storage records. A file that asks for anything else is refused before anything
  from it runs. The weights are then found by shape, since the submodule names vary between
  training scripts (`bn1` in the original, anything in a user's copy).
- native: `<name>.safetensors` (the eight tensors) next to `<name>.json` (format version, chunk
  length, layer list with the BatchNorm eps, a description). `save_classifier` writes it;
  converting a legacy file is loading it and saving it (`convert_classifier`).

The chunk length (300 or 500) a checkpoint was trained for travels with it: from the native JSON,
or from a legacy file name starting `300_` / `500_`, or else from the caller.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from safetensors import SafetensorError

from virnucpro_assets.errors import ConfigurationError, ModelFormatError, ModelNotFoundError
from virnucpro_assets.models.identity import ModelIdentity, hash_files
from virnucpro_assets.sequences.chunking import SUPPORTED_CHUNK_LENGTHS
from virnucpro_assets.storage.store import atomic_path

FEATURE_WIDTH = 3328  # DNABERT-S 768 | ESM-2 2560
HIDDEN_WIDTH = 512
CLASS_LABELS = ("others", "virus")
DEFAULT_BATCH_NORM_EPS = 1e-5  # nn.BatchNorm1d's default; a bare state_dict does not record eps

NATIVE_FORMAT = "virnucpro-classifier"
NATIVE_FORMAT_VERSION = 1
NATIVE_SUFFIXES = (".safetensors", ".json")

# Features are scored in blocks of this many rows, the last one padded with zeros. CPU matrix
# kernels are chosen by the number of rows, and different kernels round differently in the last
# bits; fixed-size blocks make a pair's scores independent of how many pairs are scored with it
# (shard sizes, re-runs). 256 is also the original's batch size.
_SCORING_BLOCK_ROWS = 256

_LEGACY_NAME_CHUNK_LENGTH = re.compile(r"^(300|500)_")


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
        with torch.inference_mode():
            for start in range(0, row_count, _SCORING_BLOCK_ROWS):
                rows = min(_SCORING_BLOCK_ROWS, row_count - start)
                block = np.zeros((_SCORING_BLOCK_ROWS, self.feature_width), dtype=np.float32)
                block[:rows] = features[start : start + rows]
                scores[start : start + rows] = self._softmax(torch.from_numpy(block))[:rows].numpy()
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


def load_classifier(path: str | Path, chunk_length: int | None = None) -> Classifier:
    """Load a classifier: native when `path` ends in .safetensors or .json, legacy torch.save otherwise.

    `chunk_length` is the chunk length the caller will use. It must agree with the one the file
    records (native JSON, or a legacy name starting `300_`/`500_`); for a legacy file whose name
    says nothing it is required.
    """
    path = Path(path)
    if path.suffix in NATIVE_SUFFIXES:
        return _load_native(path, chunk_length)
    return _load_legacy(path, chunk_length)


def save_classifier(classifier: Classifier, path: str | Path, description: str = "") -> None:
    """Write `classifier` in the native format: `path` (must end in .safetensors) and the JSON
    next to it. The files are loaded with `load_classifier(path)`; their identity is their own
    hash, not the identity of the file `classifier` was loaded from."""
    _write_native(classifier.weights, classifier.chunk_length, Path(path), description)


def convert_classifier(source: str | Path, destination: str | Path, chunk_length: int | None = None) -> Classifier:
    """Convert a legacy checkpoint (e.g. 500_model.pth) to the native format and load the result."""
    legacy = load_classifier(source, chunk_length)
    description = f"converted from {Path(source).name} (sha256 {legacy.identity.content_hash})"
    save_classifier(legacy, destination, description)
    return load_classifier(destination, legacy.chunk_length)


def write_demo_classifier(path: str | Path, chunk_length: int, seed: int, feature_width: int = FEATURE_WIDTH) -> Classifier:
    """Write a classifier with random weights drawn from `seed` in the native format and load it.

    For demonstrations and tests of the pipeline's plumbing only: its weights were never trained,
    so its predictions mean nothing biologically. The same seed always gives the same files.
    """
    _check_chunk_length(chunk_length, "chunk_length")
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
    _write_native(weights, chunk_length, Path(path), description)
    return load_classifier(path, chunk_length)


def _not_found(path: Path) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"classifier not found: {path} {'is not a file' if path.exists() else 'does not exist'}. "
        "Provide the published 300_model.pth or "
        "500_model.pth from github.com/Li-Jing-1997/VirNucPro (the one matching the chunk length), "
        "or a classifier in the native format (<name>.safetensors next to <name>.json)"
    )


def _check_chunk_length(value: object, source: str) -> int:
    if isinstance(value, bool) or value not in SUPPORTED_CHUNK_LENGTHS:
        raise ConfigurationError(
            f"{source}={value!r}: VirNucPro's classifiers exist for chunk lengths 300 and 500 only"
        )
    return int(value)


def _resolve_chunk_length(path: Path, recorded: int | None, recorded_where: str, requested: int | None) -> int:
    if requested is None:
        if recorded is None:
            raise ConfigurationError(
                f"cannot tell which chunk length {path} was trained for: its name does not start with "
                "300_ or 500_ like the published checkpoints; give the chunk length (300 or 500) explicitly"
            )
        return recorded
    requested = _check_chunk_length(requested, "chunk_length")
    if recorded is not None and recorded != requested:
        raise ConfigurationError(
            f"{path} is a classifier for {recorded}-letter chunks ({recorded_where}), but chunk length "
            f"{requested} was asked for: use chunk length {recorded}, or the classifier trained for {requested}"
        )
    return requested


# --- native format -------------------------------------------------------------------------------


def _native_paths(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.stem + ".safetensors"), path.with_name(path.stem + ".json")


def _write_native(weights: ClassifierWeights, chunk_length: int, path: Path, description: str) -> None:
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


def _load_native(path: Path, chunk_length: int | None) -> Classifier:
    weights_path, sidecar_path = _native_paths(path)
    for required in (weights_path, sidecar_path):
        if not required.is_file():
            raise _not_found(required)
    recorded_chunk_length, batch_norm_eps, feature_width = _read_sidecar(sidecar_path)
    try:
        tensors = safetensors.torch.load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFormatError(f"{weights_path} is not a readable safetensors file: {error}") from error
    weights = _weights_from_layers(_layers_of_state_dict(tensors), batch_norm_eps, weights_path, feature_width)
    return Classifier(
        weights=weights,
        chunk_length=_resolve_chunk_length(
            weights_path, recorded_chunk_length, f"per {sidecar_path.name}", chunk_length
        ),
        identity=ModelIdentity(weights_path.name, hash_files([weights_path, sidecar_path])),
    )


def _read_sidecar(path: Path) -> tuple[int, float, int]:
    """The chunk length, BatchNorm eps and input width recorded in a native classifier's JSON."""
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFormatError(f"{path} is not readable JSON: {error}") from error
    if not isinstance(sidecar, dict) or sidecar.get("format") != NATIVE_FORMAT:
        raise ModelFormatError(f"{path} does not describe a VirNucPro classifier (no \"format\": \"{NATIVE_FORMAT}\")")
    if sidecar.get("format_version") != NATIVE_FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} has format_version {sidecar.get('format_version')!r}; this version reads {NATIVE_FORMAT_VERSION}"
        )
    try:
        chunk_length = _check_chunk_length(sidecar.get("chunk_length"), f"chunk_length in {path}")
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


# --- legacy torch.save format --------------------------------------------------------------------


class _PickledModule:
    """Inert stand-in for a pickled nn.Module: unpickling fills its __dict__ and runs nothing."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for torch.FloatStorage and kin: only says which dtype a storage record holds."""

    dtype: torch.dtype


def _rebuild_tensor(
    storage: torch.Tensor, storage_offset: int, size: tuple, stride: tuple, *_unused: object
) -> torch.Tensor:
    # Stand-in for torch._utils._rebuild_tensor_v2; requires_grad, hooks and metadata do not matter here.
    return torch.as_strided(storage, tuple(size), tuple(stride), storage_offset)


def _rebuild_parameter(data: torch.Tensor, *_unused: object) -> torch.Tensor:
    # Stand-in for torch._utils._rebuild_parameter: a parameter is just its tensor here.
    return data


_PICKLED_MODULE_CLASSES = (
    "__main__.MLPClassifier",
    "torch.nn.modules.linear.Linear",
    "torch.nn.modules.batchnorm.BatchNorm1d",
    "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.dropout.Dropout",
)


def _allowed_globals() -> dict[str, object]:
    """Everything a torch.save of the classifier module or of its state_dict refers to by name; the
    restricted unpickler builds nothing else. Made afresh for every file: pickle's BUILD can set
    attributes on these objects, and a hostile file must not alter what the next load uses."""
    return {
        "collections.OrderedDict": OrderedDict,
        "builtins.set": set,
        "__builtin__.set": set,  # pickle protocol 2, torch.save's, names builtins the Python 2 way
        "torch._utils._rebuild_tensor_v2": lambda *args: _rebuild_tensor(*args),
        "torch._utils._rebuild_parameter": lambda *args: _rebuild_parameter(*args),
        "torch.FloatStorage": _StorageType(torch.float32),
        "torch.DoubleStorage": _StorageType(torch.float64),
        "torch.HalfStorage": _StorageType(torch.float16),
        "torch.BFloat16Storage": _StorageType(torch.bfloat16),
        "torch.LongStorage": _StorageType(torch.int64),  # BatchNorm's num_batches_tracked
        **{name: type(name.rsplit(".", 1)[1], (_PickledModule,), {}) for name in _PICKLED_MODULE_CLASSES},
    }


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch.save zip's data.pkl, building only what `_allowed_globals` names and
    reading tensor storages from the zip's data/<key> records."""

    def __init__(self, archive: zipfile.ZipFile, record_prefix: str, path: Path):
        super().__init__(io.BytesIO(archive.read(record_prefix + "data.pkl")), encoding="utf-8")
        self._archive = archive
        self._record_prefix = record_prefix
        self._path = path
        self._allowed_globals = _allowed_globals()
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> object:
        qualified_name = f"{module}.{name}"
        if qualified_name not in self._allowed_globals:
            raise ModelFormatError(
                f"refusing to load {self._path}: it asks to run {qualified_name}, which a VirNucPro "
                "classifier checkpoint never needs and which could execute arbitrary code; nothing from it was run"
            )
        return self._allowed_globals[qualified_name]

    def persistent_load(self, pid: object) -> torch.Tensor:
        # torch.save's zip format: ("storage", storage type, record key, device, element count)
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] in ("storage", b"storage")
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and isinstance(pid[4], int)
        ):
            raise ModelFormatError(f"{self._path} refers to an unexpected persistent object {pid!r}")
        _, storage_type, key, _device, element_count = pid
        if key not in self._storages:
            self._storages[key] = self._read_storage(key, storage_type.dtype, element_count)
        return self._storages[key]

    def _read_storage(self, key: str, dtype: torch.dtype, element_count: int) -> torch.Tensor:
        record = f"{self._record_prefix}data/{key}"
        try:
            raw = self._archive.read(record)
        except KeyError:
            raise ModelFormatError(f"{self._path} is incomplete: its record {record} is missing") from None
        byte_count = element_count * torch.empty((), dtype=dtype).element_size()
        if element_count < 0 or len(raw) < byte_count:
            raise ModelFormatError(f"{self._path} is damaged: record {record} is shorter than the tensor it holds")
        if byte_count == 0:
            return torch.empty(0, dtype=dtype)
        return torch.frombuffer(bytearray(raw[:byte_count]), dtype=dtype)


def _unpickle_checkpoint(path: Path) -> object:
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
            if len(pickles) != 1:
                raise ModelFormatError(
                    f"{path} is a zip file but not a torch.save checkpoint (no single <name>/data.pkl)"
                )
            record_prefix = pickles[0].removesuffix("data.pkl")
            byte_order = record_prefix + "byteorder"  # older torch wrote none; read those as little-endian
            if byte_order in archive.namelist() and archive.read(byte_order) != b"little":
                raise ModelFormatError(f"{path} was saved on a big-endian machine; re-save it on a little-endian one")
            return _RestrictedUnpickler(archive, record_prefix, path).load()
    except ModelFormatError:
        raise
    except zipfile.BadZipFile as error:
        raise ModelFormatError(
            f"{path} is not a torch.save checkpoint in the zip format of torch 1.6 and later: {error}"
        ) from error
    except Exception as error:  # a damaged or hostile pickle fails in many ways; none of them ran its code
        raise ModelFormatError(f"{path} is not a readable torch.save checkpoint: {error!r}") from error


def _load_legacy(path: Path, chunk_length: int | None) -> Classifier:
    if not path.is_file():
        raise _not_found(path)
    content = _unpickle_checkpoint(path)
    if isinstance(content, _PickledModule):
        layers = _layers_of_module(content, "", path)
    elif isinstance(content, dict) and all(isinstance(key, str) for key in content):
        layers = _layers_of_state_dict(_tensors_only(content, "the state_dict", path))
    else:
        raise ModelFormatError(f"{path} holds a {type(content).__name__}, not a classifier module or its state_dict")
    name_match = _LEGACY_NAME_CHUNK_LENGTH.match(path.name)
    return Classifier(
        weights=_weights_from_layers(layers, DEFAULT_BATCH_NORM_EPS, path),
        chunk_length=_resolve_chunk_length(
            path, int(name_match.group(1)) if name_match else None, "per its file name", chunk_length
        ),
        identity=ModelIdentity(path.name, hash_files([path])),
    )


# --- finding the MLP's weights by structure ------------------------------------------------------


@dataclass(frozen=True)
class _Layer:
    name: str  # dotted path of the submodule or state_dict prefix; "" for the top level
    kind: str | None  # the pickled class's name, when known
    tensors: dict[str, torch.Tensor]
    eps: object = None  # a pickled BatchNorm's eps; None when the file does not record it

    def describe(self) -> str:
        shapes = ", ".join(
            f"{key} {'x'.join(map(str, tensor.shape)) or 'scalar'}" for key, tensor in self.tensors.items()
        )
        kind = f" ({self.kind})" if self.kind else ""
        return f"{self.name or '(top level)'}{kind}: {shapes}"


def _tensors_only(mapping: object, where: str, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(mapping, dict):
        raise ModelFormatError(f"{path}: {where} is a {type(mapping).__name__}, not a dict of tensors")
    tensors = {key: value for key, value in mapping.items() if value is not None}
    strays = [
        f"{key!r} ({type(value).__name__})" for key, value in tensors.items() if not isinstance(value, torch.Tensor)
    ]
    if strays:
        raise ModelFormatError(f"{path}: {where} holds non-tensor entries {', '.join(strays)}")
    return tensors


def _layers_of_module(module: _PickledModule, name: str, path: Path) -> list[_Layer]:
    state = vars(module)
    where = name or "the top-level module"
    tensors = {
        **_tensors_only(state.get("_parameters", {}), f"the parameters of {where}", path),
        **_tensors_only(state.get("_buffers", {}), f"the buffers of {where}", path),
    }
    layers = [_Layer(name, type(module).__name__, tensors, state.get("eps"))] if tensors else []
    children = state.get("_modules", {})
    if not isinstance(children, dict):
        raise ModelFormatError(f"{path}: the submodules of {where} are not a dict")
    for child_name, child in children.items():
        child_path = f"{name}.{child_name}" if name else str(child_name)
        if not isinstance(child, _PickledModule):
            raise ModelFormatError(f"{path}: submodule {child_path} is a {type(child).__name__}, not a module")
        layers.extend(_layers_of_module(child, child_path, path))
    return layers


def _layers_of_state_dict(tensors: Mapping[str, torch.Tensor]) -> list[_Layer]:
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        layer_name, _, tensor_name = key.rpartition(".")
        grouped.setdefault(layer_name, {})[tensor_name] = tensor
    return [_Layer(name, None, layer_tensors) for name, layer_tensors in grouped.items()]


def _float_shape(tensor: torch.Tensor) -> tuple[int, ...] | None:
    return tuple(tensor.shape) if tensor.is_floating_point() else None


def _is_linear(layer: _Layer, in_features: int, out_features: int) -> bool:
    return (
        set(layer.tensors) == {"weight", "bias"}
        and _float_shape(layer.tensors["weight"]) == (out_features, in_features)
        and _float_shape(layer.tensors["bias"]) == (out_features,)
    )


def _is_batch_norm(layer: _Layer, features: int) -> bool:
    statistics = {"weight", "bias", "running_mean", "running_var"}
    return (
        statistics <= set(layer.tensors) <= statistics | {"num_batches_tracked"}
        and all(_float_shape(layer.tensors[key]) == (features,) for key in statistics)
    )


def _fp32(tensor: torch.Tensor) -> torch.Tensor:
    # A fresh contiguous fp32 copy, detached from whatever the file attached to the original.
    return tensor.detach().to(torch.float32, copy=True).contiguous()


def _weights_from_layers(
    layers: list[_Layer], batch_norm_eps: float, path: Path, feature_width: int = FEATURE_WIDTH
) -> ClassifierWeights:
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
