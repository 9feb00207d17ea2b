"""Are the three models there, readable and of the right kind? Checked before any work starts.

Cheap by design (well under a second once torch is imported): files exist, can be read and look
like what they should be (JSON that parses, a safetensors header, a PyTorch checkpoint's framing);
only the classifier, a few megabytes, is loaded whole, which also checks its chunk length. The big
models are never loaded here. A model named rather than given as a file (a Hugging Face repo id, a
fair-esm model name) is fine when it is in its cache, or else when its download site answers
within a few seconds (it is then downloaded by the first step that needs it).

Used by `virnucpro-assets run` and `materialize` before anything is written, and by the models
resource at the start of every run that needs a model (virnucpro_assets.pipeline.models).
"""

from __future__ import annotations

import json
import os
import re
import struct
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from virnucpro_assets.errors import ModelNotFoundError, VirnucproError

MODELS = ("dnabert", "esm2", "classifier")
SETTINGS = {"dnabert": "VIRNUCPRO_DNABERT_MODEL", "esm2": "VIRNUCPRO_ESM2_MODEL", "classifier": "VIRNUCPRO_CLASSIFIER"}
TITLES = {"dnabert": "DNABERT-S", "esm2": "ESM-2", "classifier": "classifier"}
FETCH_HINT = "`virnucpro-assets fetch-models` downloads it"
REACH_TIMEOUT_S = 5.0
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelProblem:
    model: str  # one of MODELS
    source: str  # the setting's value, as given
    problem: str  # what is wrong and how to provide it

    def line(self) -> str:
        shown = f"{SETTINGS[self.model]}={self.source}" if self.source else f"{SETTINGS[self.model]} unset"
        return f"{TITLES[self.model]} ({shown}): {self.problem}"


class ModelsUnavailable(ModelNotFoundError):
    """One or more models missing or unreadable: one line for each."""

    def __init__(self, problems: list[ModelProblem]):
        self.problems = problems
        super().__init__(
            f"{len(problems)} of the models {'is' if len(problems) == 1 else 'are'} not usable, so nothing was run:\n"
            + "\n".join(f"  - {p.line()}" for p in problems)
        )


def require_models(dnabert: str, esm2: str, classifier: str, chunk_length: int | None, needed: tuple[str, ...] = MODELS) -> None:
    """Raise ModelsUnavailable listing every model of `needed` that cannot be used."""
    problems = check_models(dnabert, esm2, classifier, chunk_length, needed)
    if problems:
        raise ModelsUnavailable(problems)


def check_models(
    dnabert: str, esm2: str, classifier: str, chunk_length: int | None, needed: tuple[str, ...] = MODELS
) -> list[ModelProblem]:
    """The problems of the models in `needed`. `chunk_length` None: the classifier is only checked
    against the chunk length its file records (the predictions step checks the configured one)."""
    checks = {
        "dnabert": (dnabert, lambda: check_dnabert(dnabert)),
        "esm2": (esm2, lambda: check_esm2(esm2)),
        "classifier": (classifier, lambda: check_classifier(classifier, chunk_length)),
    }
    problems = []
    for model in MODELS:
        if model in needed:
            source, check = checks[model]
            problem = check()
            if problem:
                problems.append(ModelProblem(model, source, problem))
    return problems


# --- DNABERT-S ---------------------------------------------------------------------------------

DNABERT_FILES = "config.json, model.safetensors or pytorch_model.bin, and tokenizer.json"


def check_dnabert(source: str) -> str | None:
    local = Path(source).expanduser()
    if local.is_dir():
        return _dnabert_directory_problem(local)
    if not _REPO_ID.fullmatch(source) or local.exists():
        return f"{local} is not a directory: give a directory holding {DNABERT_FILES}, or a Hugging Face repo id ({FETCH_HINT})"
    return _dnabert_repo_problem(source)


def _dnabert_directory_problem(directory: Path) -> str | None:
    problems = []
    config = directory / "config.json"
    problem = _file_problem(config) or _json_problem(config)
    if problem:
        problems.append(problem)
    weights = [directory / name for name in ("model.safetensors", "pytorch_model.bin") if (directory / name).exists()]
    if not weights:
        problems.append("no model.safetensors or pytorch_model.bin")
    else:
        problem = _file_problem(weights[0]) or (
            _safetensors_problem(weights[0]) if weights[0].suffix == ".safetensors" else _torch_file_problem(weights[0])
        )
        if problem:
            problems.append(problem)
    tokenizer = directory / "tokenizer.json"
    problem = _file_problem(tokenizer) or _json_problem(tokenizer)
    if problem:
        problems.append(problem)
    if not problems:
        return None
    return f"{directory}: " + "; ".join(problems) + f" (a DNABERT-S directory holds {DNABERT_FILES}; {FETCH_HINT})"


def _dnabert_repo_problem(repo_id: str) -> str | None:
    from huggingface_hub import constants, hf_hub_url, try_to_load_from_cache

    cached = [try_to_load_from_cache(repo_id, name) for name in ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json")]
    config, safetensors, pytorch_bin, tokenizer = (c if isinstance(c, str) else None for c in cached)
    if config and tokenizer and (safetensors or pytorch_bin):
        return _dnabert_directory_problem(Path(config).parent)
    where = f"not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if constants.HF_HUB_OFFLINE:
        return f"{where} and HF_HUB_OFFLINE is set: give a local directory holding {DNABERT_FILES} ({FETCH_HINT})"
    unreachable = _unreachable(hf_hub_url(repo_id, "config.json"))
    if unreachable:
        return f"{where}, and {unreachable}: give a local directory holding {DNABERT_FILES} ({FETCH_HINT})"
    return None


# --- ESM-2 -------------------------------------------------------------------------------------


def check_esm2(source: str, download_url: str | None = None) -> str | None:
    """`download_url`: where a model name not in torch hub's cache would be downloaded from
    (default: fair-esm's, as models/esm2/loading.py downloads it)."""
    from virnucpro_assets.models.esm2.loading import DEFAULT_MODEL, HUB_URL, hub_checkpoint_path

    if source.endswith(".pt") or "/" in source or os.sep in source:
        path = Path(source).expanduser()
        problem = _file_problem(path) or _torch_file_problem(path)
        return f"{problem}: give a fair-esm checkpoint (.pt) or a model name such as {DEFAULT_MODEL} ({FETCH_HINT})" if problem else None
    if not source.startswith("esm2_t"):
        return f"neither a fair-esm ESM-2 model name (esm2_t…, e.g. {DEFAULT_MODEL}) nor the path of a checkpoint (.pt)"
    path = hub_checkpoint_path(source)
    if path.exists():
        problem = _file_problem(path) or _torch_file_problem(path)
        if problem:
            return f"{problem} (torch hub's cached copy of {source}): remove it to download it again, or give a checkpoint file"
        return None
    unreachable = _unreachable(download_url or HUB_URL.format(name=source))
    if unreachable:
        return f"not in torch hub's cache ({path}), and {unreachable}: put {source}.pt there or give its path ({FETCH_HINT})"
    return None


# --- classifier --------------------------------------------------------------------------------


def check_classifier(source: str, chunk_length: int | None) -> str | None:
    from virnucpro_assets.errors import ConfigurationError
    from virnucpro_assets.models.classifier import load_classifier

    if not source:
        return f"not set: give the original's 300_model.pth / 500_model.pth or a native .safetensors classifier ({FETCH_HINT})"
    path = Path(source).expanduser()
    problem = _file_problem(path)
    if problem:
        return f"{problem}: give the original's 300_model.pth / 500_model.pth or a native .safetensors classifier ({FETCH_HINT})"
    try:
        load_classifier(path, chunk_length)
    except ConfigurationError as error:
        if chunk_length is None:  # readable; only its chunk length is unknown, which the predictions step checks
            return None
        return f"{error} (VIRNUCPRO_CHUNK_LENGTH sets the chunk length)"
    except VirnucproError as error:
        return str(error)
    return None


# --- what files look like ----------------------------------------------------------------------


def _file_problem(path: Path) -> str | None:
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_file():
        return f"{path} is not a file"
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as error:
        return f"{path} cannot be read ({error.strerror or error})"
    if path.stat().st_size == 0:
        return f"{path} is empty"
    return None


def _json_problem(path: Path) -> str | None:
    try:
        content = json.loads(path.read_bytes())
    except ValueError as error:
        return f"{path} is not valid JSON ({error})"
    return None if isinstance(content, dict) else f"{path} is not a JSON object"


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file starts with the length of its JSON header, then the header."""
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        size = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else 0
        header = handle.read(size) if 0 < size < 100 << 20 else b""
    try:
        if isinstance(json.loads(header), dict):
            return None
    except ValueError:
        pass
    return f"{path} is not a safetensors file"


def _torch_file_problem(path: Path) -> str | None:
    """torch.save writes a zip archive holding `<name>/data.pkl`, or (before PyTorch 1.6) a pickle."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                if any(name.endswith("/data.pkl") for name in archive.namelist()):
                    return None
        except zipfile.BadZipFile:
            pass
        return f"{path} is a zip archive but not a PyTorch checkpoint"
    with open(path, "rb") as handle:
        if handle.read(1) == b"\x80":  # a pickle's PROTO opcode
            return None
    return f"{path} is not a PyTorch checkpoint"


def _unreachable(url: str) -> str | None:
    """None if `url`'s server answers a HEAD request within REACH_TIMEOUT_S, else why not."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=REACH_TIMEOUT_S):
            return None
    except urllib.error.HTTPError as error:
        return None if error.code in (401, 403, 405) else f"{url} answers HTTP {error.code}"
    except (OSError, ValueError) as error:
        return f"{url} cannot be reached ({getattr(error, 'reason', error)})"
