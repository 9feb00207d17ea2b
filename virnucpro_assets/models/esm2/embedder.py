"""Mean ESM-2 embeddings of proteins, batched."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import esm
import numpy as np
import torch
from esm.model.esm2 import ESM2

from virnucpro_assets.models.batching import memory_token_budget, ragged_rows
from virnucpro_assets.models.compilation import compile_layers
from virnucpro_assets.models.embedding_loop import ProgressCallback, embed_in_batches
from virnucpro_assets.models.embeddings import Embeddings
from virnucpro_assets.models.esm2.architecture import FastEsm2
from virnucpro_assets.models.esm2.loading import DEFAULT_MODEL, load_fast_esm2
from virnucpro_assets.models.identity import ModelIdentity

DEFAULT_TOKEN_BUDGET = 2048  # the original's toks_per_batch, used on the CPU
# On a GPU: beyond this many tokens per batch the matrix products run no faster (benchmarks/esm2_throughput.py).
MAX_GPU_TOKEN_BUDGET = 32768
# Hidden-width vectors per token alive at once in a layer (residual, norm, q/k/v, rotated q/k, context,
# the 4x-wide MLP input and output, the fp32 copy for pooling), with room for the allocator.
ACTIVATION_WIDTHS = 24
MAX_POOLED_RESIDUES = 1024  # the original's truncation_seq_length, applied to the mean only


@dataclass(frozen=True)
class TokenizedProteins:
    residues: np.ndarray  # token id of every residue of every protein, concatenated
    starts: np.ndarray  # where each protein begins in `residues`
    lengths: np.ndarray  # residues per protein
    token_counts: np.ndarray  # BOS + residues + EOS per protein


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

    `model` may also be fair-esm's own ESM2 module (benchmarks and tests build random ones); its
    weights are copied into a FastEsm2.
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

    @property
    def embedding_key(self) -> str:
        """A hash of everything that decides the vectors besides the precision (the embedding
        cache's model key): the checkpoint's, which holds the weights and the model's arguments (the
        alphabet is fair-esm's own)."""
        return self.identity.content_hash

    @classmethod
    def from_source(
        cls,
        source: str = DEFAULT_MODEL,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        compiled: bool = False,
    ) -> Esm2Embedder:
        """`source` is a fair-esm model name or the path of a fair-esm checkpoint; see `esm2.loading`."""
        device = torch.device(device)
        dtype = dtype or default_dtype(device)
        model, alphabet, identity = load_fast_esm2(source, device, dtype)
        return cls(model, alphabet, identity, device=device, dtype=dtype, compiled=compiled)

    def token_budget(self) -> int:
        """Tokens per batch: the original's 2048 on the CPU; on a GPU, what a share of its free memory
        holds, up to where bigger batches stop paying."""
        if self.device.type != "cuda":
            return DEFAULT_TOKEN_BUDGET
        bytes_per_token = ACTIVATION_WIDTHS * self.dim * torch.finfo(self.dtype).bits // 8
        return memory_token_budget(self.device, bytes_per_token, MAX_GPU_TOKEN_BUDGET)

    def embed(
        self,
        proteins: Sequence[str],
        token_budget: int | None = None,
        on_progress: ProgressCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Embeddings:
        """float32 [N, dim] vectors in input order; `tokens` counts BOS + residues + EOS per protein.
        `token_budget` bounds the padded tokens of a batch; None picks `token_budget()`. All proteins
        are tokenized up front. See `embed_in_batches` for `on_progress`."""
        return embed_in_batches(self, proteins, token_budget, None, on_progress, clock)

    def tokenized(self, proteins: list[str]) -> TokenizedProteins:
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
        return TokenizedProteins(residues, starts, lengths, lengths + 2)

    def batch_token_budget(self, tokens: TokenizedProteins) -> int:
        return self.token_budget()

    @contextlib.contextmanager
    def in_float32(self) -> Iterator[None]:
        # Rather than keep a second, fp32 copy of the weights, the one copy is switched: half -> fp32
        # -> half is exact, so the recomputation runs the same (half-rounded) weights in fp32 arithmetic.
        self.model.to(torch.float32)
        try:
            yield
        finally:
            self.model.to(self.dtype)

    def embed_batch(self, tokens: TokenizedProteins, batch: np.ndarray) -> torch.Tensor:
        """float32 mean vectors [B, dim] of one batch, left on the device."""
        token_ids, weights = self._batch_tokens(tokens, batch)
        with torch.inference_mode():
            output = self.model(token_ids, repr_layers=[self.num_layers])
            representations = output["representations"][self.num_layers].float()
            weights = weights.to(self.device, non_blocking=True)
            return torch.bmm(weights[:, None, :], representations)[:, 0]

    def _batch_tokens(self, tokenized: TokenizedProteins, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens [B, T] as fair-esm's batch converter builds them, and the pooling weights [B, T]
        (1/n on the n pooled positions, 0 elsewhere), both in host memory."""
        lengths = tokenized.lengths[batch]
        tokens = ragged_rows(
            tokenized.residues,
            tokenized.starts,
            tokenized.lengths,
            batch,
            fill=self._alphabet.padding_idx,
            width=int(lengths.max()) + 2,
            column=1,
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


def default_dtype(device: torch.device) -> torch.dtype:
    """fp16 on a GPU (ESM-2's training precision), fp32 elsewhere."""
    return torch.float16 if device.type == "cuda" else torch.float32
