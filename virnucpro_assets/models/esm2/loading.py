"""ESM-2 checkpoints in fair-esm's format, read without executing pickled code.

A model is named either by a fair-esm model name (`esm2_t36_3B_UR50D`, looked up in torch hub's
checkpoint cache as fair-esm does, downloaded there when absent and online) or by the path of a
fair-esm checkpoint file. Either way the file is read with `torch.load(weights_only=True)`, allowing
only one class beyond tensors and plain values: `argparse.Namespace`, which holds the model config
(`cfg["model"].encoder_layers`, ...). The weights go straight into `FastEsm2` on the device:
fair-esm's own module, which would first initialise billions of random weights on the CPU, is never
built. The contact-regression weights fair-esm keeps in a separate `<name>-contact-regression.pt`
file only serve contact prediction and are never read. torch and fair-esm are imported by the
functions that read a checkpoint, so that its place is found without them.
"""

from __future__ import annotations

import argparse
import http.client
import os
import pickle
import re
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from virnucpro_assets.errors import ModelFormatError, ModelNotFoundError
from virnucpro_assets.models.identity import ModelIdentity, hash_files

if TYPE_CHECKING:
    import esm
    import torch

    from virnucpro_assets.models.esm2.architecture import FastEsm2

DEFAULT_MODEL = "esm2_t36_3B_UR50D"
# Where fair-esm's hub loader downloads from.
HUB_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/{name}.pt"
DOWNLOAD_TIMEOUT_S = 60
CHECKPOINT_GLOBALS = [argparse.Namespace]


def hub_checkpoint_path(name: str) -> Path:
    """Where fair-esm's hub loader keeps (and this module looks for) the checkpoint of model `name`:
    under torch hub's directory, `$TORCH_HOME/hub`, TORCH_HOME defaulting to `$XDG_CACHE_HOME/torch`
    and that to `~/.cache/torch` (torch.hub.get_dir's rule, tested against it)."""
    cache = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    torch_home = Path(os.environ.get("TORCH_HOME", os.path.join(cache, "torch"))).expanduser()
    return torch_home / "hub" / "checkpoints" / f"{name}.pt"


def load_fast_esm2(source: str, device: torch.device, dtype: torch.dtype) -> tuple[FastEsm2, esm.data.Alphabet, ModelIdentity]:
    """The model a fair-esm model name or checkpoint path stands for, on `device` in `dtype`, with
    its alphabet and identity (named after the model name or the file's stem)."""
    import esm

    from virnucpro_assets.models.esm2.architecture import FastEsm2

    path, name = checkpoint_path(source)
    checkpoint = read_checkpoint(path)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    config = checkpoint["cfg"]["model"]
    state = {re.sub(r"^encoder\.(sentence_encoder\.)?", "", key): value for key, value in checkpoint["model"].items()}
    try:
        model = FastEsm2.from_fair_esm_state(
            state,
            config.encoder_layers,
            config.encoder_embed_dim,
            config.encoder_attention_heads,
            alphabet,
            device,
            dtype,
        )
    except (AttributeError, KeyError, ValueError, RuntimeError) as err:
        raise ModelFormatError(f"{path} does not hold a loadable ESM-2 model: {err}") from err
    return model, alphabet, ModelIdentity(name, hash_files([path]))


def checkpoint_path(source: str) -> tuple[Path, str]:
    """The checkpoint file a model name or path stands for (downloaded into the hub cache if need
    be), and the model's name."""
    if source.endswith(".pt") or "/" in source or os.sep in source:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(
                f"ESM-2 checkpoint file {path} does not exist. Pass the path of a fair-esm checkpoint "
                f"(.pt) or a model name such as {DEFAULT_MODEL}."
            )
        return path, path.stem
    if source.startswith("esm2_t"):
        path = hub_checkpoint_path(source)
        if not path.is_file():
            _download_from_hub(source, path)
        return path, source
    raise ModelNotFoundError(
        f"{source!r} is neither a fair-esm ESM-2 model name (esm2_t…, e.g. {DEFAULT_MODEL}) "
        "nor the path of a fair-esm checkpoint file (.pt)."
    )


def _download_from_hub(name: str, destination: Path) -> None:
    url = HUB_URL.format(name=name)
    partial = None
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name and renamed when complete: a broken download never looks cached.
        handle, partial = tempfile.mkstemp(dir=destination.parent, suffix=".partial")
        with open(handle, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        os.replace(partial, destination)
    except (OSError, http.client.HTTPException) as err:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)
        raise ModelNotFoundError(
            f"ESM-2 model {name} is not at {destination} and could not be downloaded from {url} "
            f"({err}). Put the fair-esm checkpoint file {name}.pt at {destination}, or pass the "
            "path of a local fair-esm .pt checkpoint instead of the name."
        ) from err


def read_checkpoint(path: Path) -> dict:
    """The checkpoint's {"model": state dict, "cfg": {"model": Namespace}}, unpickling nothing else."""
    import torch

    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            data = _load_mapped(path)
    except pickle.UnpicklingError as err:
        unsafe_global = re.search(r"GLOBAL ([\w.]+)", str(err))
        content = f"calls {unsafe_global[1]}" if unsafe_global else "holds more than tensors and plain values"
        raise ModelFormatError(
            f"Refusing to load {path}: its pickled content {content}. Only tensors and plain "
            "configuration are unpickled, so that a checkpoint cannot execute code."
        ) from err
    except Exception as err:  # torch.load fails in many ways on files that are not checkpoints
        raise ModelFormatError(f"{path} is not a readable PyTorch checkpoint: {err!r}") from err
    if not isinstance(data, dict) or "model" not in data:
        raise ModelFormatError(f"{path} is not a fair-esm checkpoint: expected a dict with 'model' and 'cfg'.")
    if "cfg" not in data:
        raise ModelFormatError(
            f"{path} is not an ESM-2 checkpoint: it has no 'cfg' (ESM-1 checkpoints carry 'args' and are not supported)."
        )
    return data


def _load_mapped(path: Path) -> object:
    """torch.load with the tensors memory-mapped from the file rather than read into memory first:
    a fresh process loads the 3B checkpoint about 3 s faster (H100 host). Files in PyTorch's legacy
    (pre-zip) format cannot be mapped and are read whole."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "zipfile" not in str(err):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)
