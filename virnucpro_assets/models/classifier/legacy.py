"""The original's classifier files: what its train.py writes with `torch.save(model)` (the published
`300_model.pth` / `500_model.pth`, a pickled `__main__.MLPClassifier` module), or a plain
`state_dict` saved with `torch.save`.

Pickles can run arbitrary code, so these files are read by a restricted unpickler that can only
build what such a checkpoint holds (see `_allowed_globals`): modules become inert records of their
attributes and tensors are read from the zip's storage records. A file that asks for anything else
is refused before anything from it runs. The weights are then found by shape. The chunk length
comes from a file name starting `300_` / `500_`, or else from the caller.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from virnucpro_assets.errors import ModelFormatError
from virnucpro_assets.models.classifier.mlp import (
    DEFAULT_BATCH_NORM_EPS,
    Classifier,
    Layer,
    layers_of_state_dict,
    not_found,
    resolve_chunk_length,
    weights_from_layers,
)
from virnucpro_assets.models.identity import ModelIdentity, hash_files

_LEGACY_NAME_CHUNK_LENGTH = re.compile(r"^(300|500)_")


class _PickledModule:
    """Inert stand-in for a pickled nn.Module: unpickling fills its __dict__ and runs nothing."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for torch.FloatStorage and kin: only says which dtype a storage record holds."""

    dtype: torch.dtype


def _rebuild_tensor(storage: torch.Tensor, storage_offset: int, size: tuple, stride: tuple, *_unused: object) -> torch.Tensor:
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
                raise ModelFormatError(f"{path} is a zip file but not a torch.save checkpoint (no single <name>/data.pkl)")
            record_prefix = pickles[0].removesuffix("data.pkl")
            byte_order = record_prefix + "byteorder"  # older torch wrote none; read those as little-endian
            if byte_order in archive.namelist() and archive.read(byte_order) != b"little":
                raise ModelFormatError(f"{path} was saved on a big-endian machine; re-save it on a little-endian one")
            return _RestrictedUnpickler(archive, record_prefix, path).load()
    except ModelFormatError:
        raise
    except zipfile.BadZipFile as error:
        raise ModelFormatError(f"{path} is not a torch.save checkpoint in the zip format of torch 1.6 and later: {error}") from error
    except Exception as error:  # a damaged or hostile pickle fails in many ways; none of them ran its code
        raise ModelFormatError(f"{path} is not a readable torch.save checkpoint: {error!r}") from error


def load_legacy(path: Path, chunk_length: int | None) -> Classifier:
    if not path.is_file():
        raise not_found(path)
    content = _unpickle_checkpoint(path)
    if isinstance(content, _PickledModule):
        layers = _layers_of_module(content, "", path)
    elif isinstance(content, dict) and all(isinstance(key, str) for key in content):
        layers = layers_of_state_dict(_tensors_only(content, "the state_dict", path))
    else:
        raise ModelFormatError(f"{path} holds a {type(content).__name__}, not a classifier module or its state_dict")
    name_match = _LEGACY_NAME_CHUNK_LENGTH.match(path.name)
    return Classifier(
        weights=weights_from_layers(layers, DEFAULT_BATCH_NORM_EPS, path),
        chunk_length=resolve_chunk_length(path, int(name_match.group(1)) if name_match else None, "per its file name", chunk_length),
        identity=ModelIdentity(path.name, hash_files([path])),
    )


def _tensors_only(mapping: object, where: str, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(mapping, dict):
        raise ModelFormatError(f"{path}: {where} is a {type(mapping).__name__}, not a dict of tensors")
    tensors = {key: value for key, value in mapping.items() if value is not None}
    strays = [f"{key!r} ({type(value).__name__})" for key, value in tensors.items() if not isinstance(value, torch.Tensor)]
    if strays:
        raise ModelFormatError(f"{path}: {where} holds non-tensor entries {', '.join(strays)}")
    return tensors


def _layers_of_module(module: _PickledModule, name: str, path: Path) -> list[Layer]:
    state = vars(module)
    where = name or "the top-level module"
    tensors = {
        **_tensors_only(state.get("_parameters", {}), f"the parameters of {where}", path),
        **_tensors_only(state.get("_buffers", {}), f"the buffers of {where}", path),
    }
    layers = [Layer(name, type(module).__name__, tensors, state.get("eps"))] if tensors else []
    children = state.get("_modules", {})
    if not isinstance(children, dict):
        raise ModelFormatError(f"{path}: the submodules of {where} are not a dict")
    for child_name, child in children.items():
        child_path = f"{name}.{child_name}" if name else str(child_name)
        if not isinstance(child, _PickledModule):
            raise ModelFormatError(f"{path}: submodule {child_path} is a {type(child).__name__}, not a module")
        layers.extend(_layers_of_module(child, child_path, path))
    return layers
