"""A DNABERT-2 model directory in the Hugging Face layout (config.json, model.safetensors or
pytorch_model.bin, tokenizer.json): where it comes from, and its weights and tokenizer loaded
without running any code it carries. torch is imported by the two functions that read weights, so
that the tokenizer and the files can be used without it (the pipeline's CPU-only processes)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import tokenizers
from safetensors import SafetensorError

from virnucpro_assets.errors import ModelFormatError, ModelNotFoundError
from virnucpro_assets.models.dnabert2.config import DnabertConfig

if TYPE_CHECKING:
    import torch

    from virnucpro_assets.models.dnabert2.architecture import DnabertModel

DEFAULT_DNABERT_SOURCE = "zhihan1996/DNABERT-S"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference
HUB_ALLOW_PATTERNS = [
    CONFIG_FILE,
    "*.safetensors",
    "pytorch_model.bin",
    TOKENIZER_FILE,
    "tokenizer_config.json",
    "special_tokens_map.json",
]

# Checkpoints saved from BertForMaskedLM hold the encoder under `bert.` and the MLM head under `cls.`.
ENCODER_PREFIX = "bert."
IGNORED_PREFIXES = ("cls.",)


def resolve_dnabert_source(source: str = DEFAULT_DNABERT_SOURCE) -> Path:
    """A local model directory as-is; anything else is taken as a Hugging Face repo id, downloaded
    (weights, config and tokenizer files only, never code) or found in the Hugging Face cache."""
    local = Path(source).expanduser()
    if local.is_dir():
        return local
    import huggingface_hub  # slow to import; only needed here
    from huggingface_hub.constants import HF_HUB_CACHE

    try:
        return Path(huggingface_hub.snapshot_download(source, allow_patterns=HUB_ALLOW_PATTERNS))
    except Exception as error:  # offline, unknown repo, invalid id, ...: all mean "not available"
        raise ModelNotFoundError(
            f"DNABERT model {source!r} not found: {local} is not a local directory, and it could not be "
            f"fetched as a Hugging Face repo id nor found in the Hugging Face cache ({HF_HUB_CACHE}): "
            f"{type(error).__name__}: {error}. Pass a local directory holding {CONFIG_FILE}, "
            f"{' or '.join(WEIGHT_FILES)} and {TOKENIZER_FILE}, or run once with network access "
            f"so the Hugging Face repo is cached."
        ) from error


def find_weights_file(directory: Path) -> Path:
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    raise ModelNotFoundError(f"{directory}: no weight file, expected {' or '.join(WEIGHT_FILES)}")


def required_file(directory: Path, name: str) -> Path:
    if not directory.is_dir():
        raise ModelNotFoundError(f"DNABERT model directory {directory} does not exist")
    if not (directory / name).is_file():
        raise ModelNotFoundError(f"{directory}: missing {name}")
    return directory / name


def read_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Tensors of a safetensors or PyTorch weight file, with any `bert.` prefix removed and any
    MLM head dropped; safetensors are read straight onto `device`, a .bin onto the CPU. A .bin is
    unpickled with weights_only=True, which refuses arbitrary objects."""
    import safetensors.torch
    import torch

    try:
        if path.suffix == ".safetensors":
            tensors = safetensors.torch.load_file(path, device=str(device))
        else:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, OSError) as error:
        raise ModelFormatError(f"{path}: cannot read weights: {error}") from error
    if not isinstance(tensors, dict) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise ModelFormatError(f"{path}: not a state dict of tensors")

    state = {}
    for name, tensor in tensors.items():
        if name.startswith(IGNORED_PREFIXES):
            continue
        key = name.removeprefix(ENCODER_PREFIX)
        if key in state:
            raise ModelFormatError(f"{path}: holds {key!r} both with and without the {ENCODER_PREFIX!r} prefix")
        state[key] = tensor
    return state


def _name_list(names: list[str], shown: int = 10) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def load_dnabert_model(directory: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> DnabertModel:
    """DnabertModel from config.json and the weight file of `directory`, in eval mode on `device`,
    in `dtype` (float32 unless given)."""
    import torch

    from virnucpro_assets.models.dnabert2.architecture import DnabertModel

    dtype = dtype or torch.float32
    config = DnabertConfig.from_json(required_file(directory, CONFIG_FILE))
    weights_path = find_weights_file(directory)
    state = read_checkpoint(weights_path, device)
    # Built on the device itself, whose random initialisation is then replaced: on a GPU that is
    # near free, where initialising 117M weights on the CPU first costs most of a step's load time.
    with torch.device(device):
        model = DnabertModel(config, with_pooler=any(key.startswith("pooler.") for key in state))

    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    misshapen = sorted(
        f"{key} {list(state[key].shape)} (config says {list(expected[key].shape)})"
        for key in expected.keys() & state.keys()
        if state[key].shape != expected[key].shape
    )
    problems = [
        f"{label}: {_name_list(names)}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen))
        if names
    ]
    if problems:
        raise ModelFormatError(f"{weights_path}: weights do not fit the DNABERT-2 model of {CONFIG_FILE}; " + "; ".join(problems))

    model.load_state_dict({key: tensor.to(device=device, dtype=dtype) for key, tensor in state.items()}, assign=True)
    return model.eval().requires_grad_(False)


def load_dnabert_tokenizer(directory: Path) -> tokenizers.Tokenizer:
    """The tokenizer.json tokenizer, set up to give the ids `AutoTokenizer(...)(seq)` gives:
    [CLS] ... [SEP] from its post-processor, no truncation (reads over 512 tokens stay whole) and
    no padding (tokenizer.json may ask for it; the embedder pads batches itself)."""
    path = required_file(directory, TOKENIZER_FILE)
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(path))
    except Exception as error:  # the Rust side raises plain Exception on malformed JSON
        raise ModelFormatError(f"{path}: cannot load tokenizer: {error}") from error
    tokenizer.no_truncation()
    tokenizer.no_padding()

    special = {token: tokenizer.token_to_id(token) for token in ("[CLS]", "[SEP]", "[PAD]")}
    absent = [token for token, token_id in special.items() if token_id is None]
    if absent:
        raise ModelFormatError(f"{path}: tokenizer has no {', '.join(absent)} token")
    if tokenizer.post_processor is None:
        raise ModelFormatError(f"{path}: tokenizer has no post_processor, so it would not add [CLS] and [SEP]")
    probe = tokenizer.encode("A").ids
    if probe[0] != special["[CLS]"] or probe[-1] != special["[SEP]"]:
        raise ModelFormatError(f"{path}: tokenizer's post_processor does not produce [CLS] ... [SEP]")
    return tokenizer
