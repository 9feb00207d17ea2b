"""ESM-2 protein embeddings through fair-esm's own model, loaded without executing pickled code.

A model is named either by a fair-esm model name (`esm2_t36_3B_UR50D`, looked up in torch hub's
checkpoint cache as fair-esm does, downloaded there when absent and online) or by the path of a
fair-esm checkpoint file. Either way the file is read with `torch.load(weights_only=True)`, allowing
only one class beyond tensors and plain values: `argparse.Namespace`, which fair-esm reads the model
config from (`cfg["model"].encoder_layers`, ...). The result is handed to
`esm.pretrained.load_model_and_alphabet_core`. The contact-regression weights fair-esm keeps in a
separate `<name>-contact-regression.pt` file only serve contact prediction and are never read.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import logging
import os
import pickle
import re
import shutil
import tempfile
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import esm
import numpy as np
import torch
from esm.model.esm2 import ESM2
from esm.rotary_embedding import RotaryEmbedding

from virnucpro_assets.errors import ModelFormatError, ModelNotFoundError
from virnucpro_assets.models.batching import token_budget_batches
from virnucpro_assets.models.embeddings import Embeddings
from virnucpro_assets.models.identity import ModelIdentity, hash_files

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "esm2_t36_3B_UR50D"
DEFAULT_TOKEN_BUDGET = 2048  # the original's toks_per_batch
MAX_POOLED_RESIDUES = 1024  # the original's truncation_seq_length, applied to the mean only
# Where fair-esm's hub loader downloads from.
HUB_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/{name}.pt"
DOWNLOAD_TIMEOUT_S = 60
CHECKPOINT_GLOBALS = [argparse.Namespace]


@dataclass(frozen=True)
class LoadedEsm2:
    model: ESM2  # fp32, on the CPU, in eval mode
    alphabet: esm.data.Alphabet
    identity: ModelIdentity


def hub_checkpoint_path(name: str) -> Path:
    """Where fair-esm's hub loader keeps (and this module looks for) the checkpoint of model `name`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / f"{name}.pt"


def load_esm2(source: str = DEFAULT_MODEL) -> LoadedEsm2:
    """Load ESM-2 from a fair-esm model name (`esm2_t…`) or the path of a fair-esm checkpoint (.pt)."""
    if source.endswith(".pt") or "/" in source or os.sep in source:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(
                f"ESM-2 checkpoint file {path} does not exist. Pass the path of a fair-esm checkpoint "
                f"(.pt) or a model name such as {DEFAULT_MODEL}."
            )
        name = path.stem
    elif source.startswith("esm2_t"):
        name = source
        path = hub_checkpoint_path(name)
        if not path.is_file():
            _download_from_hub(name, path)
    else:
        raise ModelNotFoundError(
            f"{source!r} is neither a fair-esm ESM-2 model name (esm2_t…, e.g. {DEFAULT_MODEL}) "
            "nor the path of a fair-esm checkpoint file (.pt)."
        )
    model, alphabet = _build_model(_read_checkpoint(path), path)
    return LoadedEsm2(model.eval(), alphabet, ModelIdentity(name, hash_files([path])))


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


def _read_checkpoint(path: Path) -> dict:
    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            data = torch.load(path, map_location="cpu", weights_only=True)
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
        raise ModelFormatError(
            f"{path} is not a fair-esm checkpoint: expected a dict with 'model' and 'cfg'."
        )
    if "cfg" not in data:
        raise ModelFormatError(
            f"{path} is not an ESM-2 checkpoint: it has no 'cfg' (ESM-1 checkpoints carry 'args' "
            "and are not supported)."
        )
    return data


def _build_model(checkpoint: dict, path: Path) -> tuple[ESM2, esm.data.Alphabet]:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Regression weights not found")
            # fair-esm picks its ESM-2 builder by the name's "esm2" prefix; the format was checked above.
            return esm.pretrained.load_model_and_alphabet_core("esm2", checkpoint, regression_data=None)
    except (AttributeError, KeyError, RuntimeError, TypeError) as err:
        raise ModelFormatError(f"{path} does not hold a loadable ESM-2 model: {err}") from err


class Esm2Embedder:
    """Mean ESM-2 embeddings of proteins, exactly as the original VirNucPro computes them.

    Each protein is tokenized with fair-esm's batch converter (BOS + residues + EOS, padded) and run
    whole through fair-esm's ESM2 module (token-dropout rescaling included); the last layer's
    representation, after the final layer norm, is averaged over positions 1..min(len, 1024): BOS,
    EOS and padding excluded. Like the original, a protein longer than 1024 residues is not truncated
    before the model (ESM-2's rotary positions have no length limit): the model sees all of it and only
    its first 1024 residues enter the mean. Proteins from 300/500-nt chunks never come near that.

    fp32 on CPU. On CUDA the default is fp16, the precision ESM-2 was trained in; any protein whose
    half-precision vector comes out non-finite is recomputed in fp32, and a batch that runs out of GPU
    memory is split in two and retried. The recomputation runs the half-rounded weights in fp32
    arithmetic, which is the fp32 model itself when the checkpoint is stored in fp16.
    """

    def __init__(
        self,
        model: ESM2,
        alphabet: esm.data.Alphabet,
        identity: ModelIdentity,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ):
        self.device = torch.device(device)
        if dtype is None:
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.dtype = dtype
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.identity = identity
        self.dim = model.embed_dim
        self.num_layers = model.num_layers
        self._batch_converter = alphabet.get_batch_converter()
        self._residue_letters = {token for token in alphabet.standard_toks if len(token) == 1}

    @classmethod
    def from_source(
        cls,
        source: str = DEFAULT_MODEL,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> Esm2Embedder:
        loaded = load_esm2(source)
        return cls(loaded.model, loaded.alphabet, loaded.identity, device=device, dtype=dtype)

    def embed(self, proteins: Sequence[str], token_budget: int = DEFAULT_TOKEN_BUDGET) -> Embeddings:
        """float32 [N, dim] vectors in input order; `tokens` counts BOS + residues + EOS per protein."""
        self._check_letters(proteins)
        token_counts = np.array([len(protein) + 2 for protein in proteins], dtype=np.int64)
        vectors = np.empty((len(proteins), self.dim), dtype=np.float32)
        for batch in token_budget_batches(token_counts, token_budget):
            vectors[batch] = self._embed_batch_splitting_on_oom([proteins[i] for i in batch])
        if self.dtype != torch.float32:
            self._redo_non_finite_in_fp32(proteins, token_counts, vectors, token_budget)
        return Embeddings(vectors, int(token_counts.sum()))

    def _check_letters(self, proteins: Sequence[str]) -> None:
        for index, protein in enumerate(proteins):
            if not protein:
                raise ValueError(f"protein {index} is empty; ESM-2 needs at least one residue")
            unknown = "".join(sorted(set(protein) - self._residue_letters))
            if unknown:
                raise ValueError(f"protein {index} has letters ESM-2 cannot encode: {unknown}")

    def _redo_non_finite_in_fp32(
        self, proteins: Sequence[str], token_counts: np.ndarray, vectors: np.ndarray, token_budget: int
    ) -> None:
        unstable = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if unstable.size == 0:
            return
        logger.warning(
            "%d of %d proteins gave non-finite vectors in %s; recomputing them in fp32",
            unstable.size, len(proteins), self.dtype,
        )
        with self._in_fp32():
            for batch in token_budget_batches(token_counts[unstable], token_budget):
                redo = unstable[batch]
                vectors[redo] = self._embed_batch_splitting_on_oom([proteins[i] for i in redo])

    @contextlib.contextmanager
    def _in_fp32(self) -> Iterator[None]:
        # Rather than keep a second, fp32 copy of the weights, the one copy is switched: half -> fp32
        # -> half is exact, so the recomputation runs the same (half-rounded) weights in fp32 arithmetic.
        self._switch_dtype(torch.float32)
        try:
            yield
        finally:
            self._switch_dtype(self.dtype)

    def _switch_dtype(self, dtype: torch.dtype) -> None:
        self.model.to(dtype)
        # fair-esm's rotary embeddings cache their cos/sin tables by sequence length alone; a table left
        # from the other precision would mix dtypes inside attention.
        for module in self.model.modules():
            if isinstance(module, RotaryEmbedding):
                module._seq_len_cached = None

    def _embed_batch_splitting_on_oom(self, proteins: list[str]) -> np.ndarray:
        try:
            return self._embed_batch(proteins)
        except torch.cuda.OutOfMemoryError:
            if len(proteins) == 1:
                raise
        # Split outside the except block so the failed attempt's tensors are freed first.
        torch.cuda.empty_cache()
        middle = len(proteins) // 2
        halves = (proteins[:middle], proteins[middle:])
        return np.concatenate([self._embed_batch_splitting_on_oom(half) for half in halves])

    def _embed_batch(self, proteins: list[str]) -> np.ndarray:
        _, _, tokens = self._batch_converter([("", protein) for protein in proteins])
        with torch.inference_mode():
            output = self.model(tokens.to(self.device), repr_layers=[self.num_layers])
            representations = output["representations"][self.num_layers].float()
            pooled_lengths = [min(len(protein), MAX_POOLED_RESIDUES) for protein in proteins]
            pooled_counts = torch.tensor(pooled_lengths, device=self.device)
            positions = torch.arange(representations.shape[1], device=self.device)
            pooled = (positions >= 1) & (positions <= pooled_counts[:, None])
            sums = (representations * pooled[:, :, None]).sum(dim=1)
            return (sums / pooled_counts[:, None]).cpu().numpy()


def write_tiny_esm2_checkpoint(
    path: str | Path, num_layers: int = 2, embed_dim: int = 32, attention_heads: int = 4, seed: int = 0
) -> Path:
    """Write a small random ESM-2 in fair-esm's hub checkpoint format, for tests and the offline demo.

    Like the hub files: {"model": state dict under fairseq's "encoder.sentence_encoder." /
    "encoder." prefixes, "cfg": {"model": argparse.Namespace(...)}}, with the contact-regression
    weights left out (fair-esm ships those in a separate file). The same arguments give the same bytes.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # ESM2's default initialisation draws from the global RNG
        model = ESM2(num_layers, embed_dim, attention_heads, alphabet="ESM-1b", token_dropout=True)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.ndim > 1:
                parameter.copy_(noise / parameter.shape[-1] ** 0.5)  # keeps activations near unit scale
            elif name.endswith("weight"):
                parameter.copy_(1 + 0.2 * noise)  # layer norm gains
            else:
                parameter.copy_(0.2 * noise)
    hub_state = {
        ("encoder." if key.startswith("lm_head.") else "encoder.sentence_encoder.") + key: tensor
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
