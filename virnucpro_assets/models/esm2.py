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

from virnucpro_assets.errors import ModelFormatError, ModelNotFoundError
from virnucpro_assets.models.batching import memory_token_budget, ragged_rows, token_budget_batches
from virnucpro_assets.models.compilation import compile_layers
from virnucpro_assets.models.embeddings import Embeddings
from virnucpro_assets.models.esm2_fast import FastEsm2
from virnucpro_assets.models.identity import ModelIdentity, hash_files

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "esm2_t36_3B_UR50D"
DEFAULT_TOKEN_BUDGET = 2048  # the original's toks_per_batch, used on the CPU
# On a GPU: beyond this many tokens per batch the matrix products run no faster (benchmarks/esm2_throughput.py).
MAX_GPU_TOKEN_BUDGET = 32768
# Hidden-width vectors per token alive at once in a layer (residual, norm, q/k/v, rotated q/k, context,
# the 4x-wide MLP input and output, the fp32 copy for pooling), with room for the allocator.
ACTIVATION_WIDTHS = 24
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
    """Load fair-esm's ESM-2 module from a model name (`esm2_t…`) or the path of a fair-esm checkpoint (.pt)."""
    path, name = _checkpoint_path(source)
    model, alphabet = _build_model(_read_checkpoint(path), path)
    return LoadedEsm2(model.eval(), alphabet, ModelIdentity(name, hash_files([path])))


def _checkpoint_path(source: str) -> tuple[Path, str]:
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


def _read_checkpoint(path: Path) -> dict:
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


def _load_mapped(path: Path) -> object:
    """torch.load with the tensors memory-mapped from the file rather than read into memory first:
    a fresh process loads the 3B checkpoint about 3 s faster (H100 host). Files in PyTorch's legacy
    (pre-zip) format cannot be mapped and are read whole."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "zipfile" not in str(err):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


class Esm2Embedder:
    """Mean ESM-2 embeddings of proteins, exactly as the original VirNucPro computes them.

    Each protein is tokenized like fair-esm's batch converter does (BOS + residues + EOS, padded) and
    run whole through ESM-2 (token-dropout rescaling included), computed by `FastEsm2`, which is tested
    against fair-esm's own module; the last layer's representation, after the final layer norm, is
    averaged over positions 1..min(len, 1024): BOS, EOS and padding excluded. Like the original, a
    protein longer than 1024 residues is not truncated before the model (ESM-2's rotary positions have
    no length limit): the model sees all of it and only its first 1024 residues enter the mean.
    Proteins from 300/500-nt chunks never come near that.

    fp32 on CPU. On CUDA the default is fp16, the precision ESM-2 was trained in; any protein whose
    half-precision vector comes out non-finite is recomputed in fp32, and a batch that runs out of GPU
    memory is split in two and retried. The recomputation runs the half-rounded weights in fp32
    arithmetic, which is the fp32 model itself when the checkpoint is stored in fp16 (as the hub's are).

    The GPU is kept busy: all proteins are tokenized up front, each batch's tokens go to the device
    from pinned memory without waiting, and the vectors come back the same way; the host only waits
    once, at the end.
    """

    def __init__(
        self,
        model: ESM2 | FastEsm2,
        alphabet: esm.data.Alphabet,
        identity: ModelIdentity,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        compiled: bool = False,
    ):
        self.device = torch.device(device)
        self.dtype = dtype = dtype or default_dtype(self.device)
        fast = model if isinstance(model, FastEsm2) else FastEsm2.from_fair_esm(model)
        self.model = fast.to(device=self.device, dtype=dtype).eval()
        if compiled:
            compile_layers(self.model.layers)
        self.identity = identity
        self.dim = fast.embed_dim
        self.num_layers = fast.num_layers
        self._alphabet = alphabet
        self._residue_letters = {token for token in alphabet.standard_toks if len(token) == 1}
        self._token_of_byte = np.full(256, -1, dtype=np.int64)
        for letter in self._residue_letters:
            self._token_of_byte[ord(letter)] = alphabet.get_idx(letter)

    @classmethod
    def from_source(
        cls,
        source: str = DEFAULT_MODEL,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        compiled: bool = False,
    ) -> Esm2Embedder:
        """Reads the checkpoint straight into the fast model on `device`: fair-esm's module, which
        would first initialise billions of random weights on the CPU, is never built."""
        path, name = _checkpoint_path(source)
        device = torch.device(device)
        dtype = dtype or default_dtype(device)
        checkpoint = _read_checkpoint(path)
        alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
        config = checkpoint["cfg"]["model"]
        state = {re.sub(r"^encoder\.(sentence_encoder\.)?", "", key): value for key, value in checkpoint["model"].items()}
        try:
            model = FastEsm2.from_fair_esm_state(
                state, config.encoder_layers, config.encoder_embed_dim, config.encoder_attention_heads,
                alphabet, device, dtype,
            )
        except (AttributeError, KeyError, ValueError, RuntimeError) as err:
            raise ModelFormatError(f"{path} does not hold a loadable ESM-2 model: {err}") from err
        identity = ModelIdentity(name, hash_files([path]))
        return cls(model, alphabet, identity, device=device, dtype=dtype, compiled=compiled)

    def token_budget(self) -> int:
        """Tokens per batch: the original's 2048 on the CPU; on a GPU, what a share of its free memory
        holds, up to where bigger batches stop paying."""
        if self.device.type != "cuda":
            return DEFAULT_TOKEN_BUDGET
        bytes_per_token = ACTIVATION_WIDTHS * self.dim * torch.finfo(self.dtype).bits // 8
        return memory_token_budget(self.device, bytes_per_token, MAX_GPU_TOKEN_BUDGET)

    def embed(self, proteins: Sequence[str], token_budget: int | None = None) -> Embeddings:
        """float32 [N, dim] vectors in input order; `tokens` counts BOS + residues + EOS per protein.
        `token_budget` bounds the padded tokens of a batch; None picks `token_budget()`."""
        tokenized = self._tokenize(proteins)
        token_budget = token_budget or self.token_budget()
        token_counts = tokenized.lengths + 2
        batches = list(token_budget_batches(token_counts, token_budget))
        in_batch_order = torch.empty((len(proteins), self.dim), pin_memory=self.device.type == "cuda")
        start = 0
        for batch in batches:
            pooled = self._embed_batch_splitting_on_oom(tokenized, batch)
            in_batch_order[start : start + len(batch)].copy_(pooled, non_blocking=True)
            start += len(batch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        vectors = np.empty((len(proteins), self.dim), dtype=np.float32)
        if batches:
            vectors[np.concatenate(batches)] = in_batch_order.numpy()
        if self.dtype != torch.float32:
            self._redo_non_finite_in_fp32(tokenized, token_counts, vectors, token_budget)
        return Embeddings(vectors, int(token_counts.sum()))

    def _tokenize(self, proteins: Sequence[str]) -> TokenizedProteins:
        lengths = np.fromiter(map(len, proteins), dtype=np.int64, count=len(proteins))
        if (lengths == 0).any():
            raise ValueError(f"protein {np.argmin(lengths)} is empty; ESM-2 needs at least one residue")
        # Non-ASCII letters become "?", which no token has: the check below then names them.
        letters = np.frombuffer("".join(proteins).encode("ascii", errors="replace"), dtype=np.uint8)
        residues = self._token_of_byte[letters]
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        unknown_at = np.flatnonzero(residues < 0)
        if unknown_at.size:
            index = int(np.searchsorted(starts, unknown_at[0], side="right")) - 1
            unknown = "".join(sorted(set(proteins[index]) - self._residue_letters))
            raise ValueError(f"protein {index} has letters ESM-2 cannot encode: {unknown}")
        return TokenizedProteins(residues, starts, lengths)

    def _batch_tokens(self, tokenized: TokenizedProteins, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens [B, T] as fair-esm's batch converter builds them, and the pooling weights [B, T]
        (1/n on the n pooled positions, 0 elsewhere), both in host memory."""
        lengths = tokenized.lengths[batch]
        tokens = ragged_rows(
            tokenized.residues, tokenized.starts, tokenized.lengths, batch,
            fill=self._alphabet.padding_idx, width=int(lengths.max()) + 2, column=1,
        )
        tokens[:, 0] = self._alphabet.cls_idx
        tokens[np.arange(len(batch)), lengths + 1] = self._alphabet.eos_idx
        pooled_counts = np.minimum(lengths, MAX_POOLED_RESIDUES)
        positions = np.arange(tokens.shape[1])
        pooled = (positions >= 1) & (positions <= pooled_counts[:, None])
        weights = (pooled / pooled_counts[:, None]).astype(np.float32)
        tokens, weights = torch.from_numpy(tokens), torch.from_numpy(weights)
        if self.device.type == "cuda":
            tokens, weights = tokens.pin_memory(), weights.pin_memory()
        return tokens, weights

    def _redo_non_finite_in_fp32(
        self, tokenized: TokenizedProteins, token_counts: np.ndarray, vectors: np.ndarray, token_budget: int
    ) -> None:
        unstable = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if unstable.size == 0:
            return
        logger.warning(
            "%d of %d proteins gave non-finite vectors in %s; recomputing them in fp32",
            unstable.size, len(vectors), self.dtype,
        )
        with self._in_fp32():
            for batch in token_budget_batches(token_counts[unstable], token_budget):
                redo = unstable[batch]
                vectors[redo] = self._embed_batch_splitting_on_oom(tokenized, redo).cpu().numpy()

    @contextlib.contextmanager
    def _in_fp32(self) -> Iterator[None]:
        # Rather than keep a second, fp32 copy of the weights, the one copy is switched: half -> fp32
        # -> half is exact, so the recomputation runs the same (half-rounded) weights in fp32 arithmetic.
        self.model.to(torch.float32)
        try:
            yield
        finally:
            self.model.to(self.dtype)

    def _embed_batch_splitting_on_oom(self, tokenized: TokenizedProteins, batch: np.ndarray) -> torch.Tensor:
        try:
            return self._embed_batch(tokenized, batch)
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1:
                raise
        # Split outside the except block so the failed attempt's tensors are freed first.
        torch.cuda.empty_cache()
        middle = len(batch) // 2
        return torch.cat([self._embed_batch_splitting_on_oom(tokenized, half) for half in (batch[:middle], batch[middle:])])

    def _embed_batch(self, tokenized: TokenizedProteins, batch: np.ndarray) -> torch.Tensor:
        """float32 mean vectors [B, dim] of one batch, left on the device."""
        tokens, weights = self._batch_tokens(tokenized, batch)
        with torch.inference_mode():
            output = self.model(tokens, repr_layers=[self.num_layers])
            representations = output["representations"][self.num_layers].float()
            weights = weights.to(self.device, non_blocking=True)
            return torch.bmm(weights[:, None, :], representations)[:, 0]


def default_dtype(device: torch.device) -> torch.dtype:
    """fp16 on a GPU (ESM-2's training precision), fp32 elsewhere."""
    return torch.float16 if device.type == "cuda" else torch.float32


@dataclass(frozen=True)
class TokenizedProteins:
    residues: np.ndarray  # token id of every residue of every protein, concatenated
    starts: np.ndarray  # where each protein begins in `residues`
    lengths: np.ndarray  # residues per protein


def random_esm2(
    num_layers: int = 2, embed_dim: int = 32, attention_heads: int = 4, seed: int = 0, device: str | torch.device = "cpu"
) -> ESM2:
    """fair-esm's ESM2 module with random weights scaled to keep activations near unit size, built
    on `device` (a 3B-sized one in seconds on a GPU). The same arguments give the same weights."""
    device = torch.device(device)
    generator = torch.Generator(device).manual_seed(seed)
    # ESM2's default initialisation draws from the global RNG, which is left as it was.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), device:
        model = ESM2(num_layers, embed_dim, attention_heads, alphabet="ESM-1b", token_dropout=True)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator, device=device)
            if parameter.ndim > 1:
                parameter.copy_(noise / parameter.shape[-1] ** 0.5)
            elif name.endswith("weight"):
                parameter.copy_(1 + 0.2 * noise)  # layer norm gains
            else:
                parameter.copy_(0.2 * noise)
    return model.eval()


def write_tiny_esm2_checkpoint(
    path: str | Path,
    num_layers: int = 2,
    embed_dim: int = 32,
    attention_heads: int = 4,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Path:
    """Write a random ESM-2 (`random_esm2`) in fair-esm's hub checkpoint format, for tests, the
    offline demo and benchmarks (36 layers, 2560 wide, 40 heads is the 3B shape; the hub stores fp16).

    Like the hub files: {"model": state dict under fairseq's "encoder.sentence_encoder." /
    "encoder." prefixes, "cfg": {"model": argparse.Namespace(...)}}, with the contact-regression
    weights left out (fair-esm ships those in a separate file). The same arguments give the same bytes.
    """
    model = random_esm2(num_layers, embed_dim, attention_heads, seed, device)
    hub_state = {
        ("encoder." if key.startswith("lm_head.") else "encoder.sentence_encoder.") + key: tensor.to("cpu", dtype)
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
