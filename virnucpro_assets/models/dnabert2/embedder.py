"""Mean DNABERT-S embeddings of nucleotide sequences, batched."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from virnucpro_assets.errors import ModelFormatError
from virnucpro_assets.models.batching import memory_token_budget, ragged_rows
from virnucpro_assets.models.compilation import compile_layers
from virnucpro_assets.models.dnabert2.architecture import DnabertModel
from virnucpro_assets.models.dnabert2.loading import (
    CONFIG_FILE,
    DEFAULT_DNABERT_SOURCE,
    TOKENIZER_FILE,
    find_weights_file,
    load_dnabert_model,
    load_dnabert_tokenizer,
    resolve_dnabert_source,
)
from virnucpro_assets.models.dnabert2.tokens import TokenizedSequences, tokenize
from virnucpro_assets.models.embedding_loop import ProgressCallback, embed_in_batches
from virnucpro_assets.models.embeddings import Embeddings
from virnucpro_assets.models.identity import ModelIdentity, hash_files

DEFAULT_TOKEN_BUDGET = 8192  # on the CPU
TOKENIZE_CHUNK = 16384  # sequences tokenized at a time, while the GPU embeds the previous ones
# On a GPU: beyond this many tokens per batch the matrix products run no faster (benchmarks/dnabert_throughput.py).
MAX_GPU_TOKEN_BUDGET = 65536
# Hidden-width vectors per token alive at once in a layer (hidden, q/k/v, context, the gated MLP's
# 8x-wide projection and its 4x-wide product, the fp32 copy for pooling), with room for the allocator.
ACTIVATION_WIDTHS = 32


class DnabertEmbedder:
    """Mean-pooled DNABERT-S embeddings of nucleotide sequences, batched, equal to the original's
    one-sequence-at-a-time vectors: the mean of the last hidden state over every token, [CLS] and
    [SEP] included.

    Precision: float32 on CPU. On CUDA the default is float16 (pass dtype=torch.float32 for the
    original's precision); a sequence whose float16 vector is not finite is embedded again with a
    float32 copy of the model, loaded from the weight file the first time it is needed.
    `compiled` runs each layer through torch.compile (see benchmarks/dnabert_throughput.py for what
    it gains, and costs the first time)."""

    def __init__(
        self,
        directory: Path,
        name: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        compiled: bool = False,
    ):
        self.directory = directory
        self.device = torch.device(device)
        if dtype is None:
            dtype = torch.float32 if self.device.type == "cpu" else torch.float16
        self.dtype = dtype
        self.tokenizer = load_dnabert_tokenizer(directory)
        self.pad_id = self.tokenizer.token_to_id("[PAD]")
        self.model = load_dnabert_model(directory, self.device, self.dtype)
        if compiled:
            compile_layers(self.model.encoder.layer)
        self.dim = self.model.config.hidden_size
        if self.tokenizer.get_vocab_size() > self.model.config.vocab_size:
            raise ModelFormatError(
                f"{directory}: {TOKENIZER_FILE} has {self.tokenizer.get_vocab_size()} tokens, more than the "
                f"model's vocab_size {self.model.config.vocab_size}: tokenizer and weights do not belong together"
            )
        # Hashed while the model embeds: in a machine's first step (no cached hash) hashing DNABERT-S's
        # 470 MB took 0.45 s on an H200 machine, more than the rest of loading it.
        hashing = ThreadPoolExecutor(1, thread_name_prefix="hash DNABERT weights")
        self._name, self._content_hash = name, hashing.submit(hash_files, [find_weights_file(directory)])
        hashing.shutdown(wait=False)
        self._float32_model: DnabertModel | None = None  # loaded when a half-precision vector is not finite

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(name=self._name, content_hash=self._content_hash.result())

    @property
    def embedding_key(self) -> str:
        """A hash of everything that decides the vectors besides the precision: the weights, and
        the configuration and tokenizer that turn a sequence into their input (the embedding cache's
        model key)."""
        parts = [self.identity.content_hash, *(hash_files([self.directory / name]) for name in (CONFIG_FILE, TOKENIZER_FILE))]
        return hashlib.sha256(":".join(parts).encode()).hexdigest()

    @classmethod
    def from_source(
        cls,
        source: str = DEFAULT_DNABERT_SOURCE,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        compiled: bool = False,
    ) -> DnabertEmbedder:
        """`source` is a local directory (named after its last component) or a Hugging Face repo id
        (named after the id); see `resolve_dnabert_source`."""
        directory = resolve_dnabert_source(source)
        name = directory.resolve().name if Path(source).expanduser().is_dir() else source
        return cls(directory, name, device, dtype, compiled)

    def tokenize(self, sequences: Sequence[str]) -> list[list[int]]:
        """Token ids per sequence, [CLS] ... [SEP], unpadded and untruncated, as lists."""
        return [encoding.ids for encoding in self.tokenizer.encode_batch_fast(list(sequences))]

    def token_budget(self, longest: int) -> int:
        """Tokens per batch: DEFAULT_TOKEN_BUDGET on the CPU; on a GPU, what a share of its free
        memory holds for sequences of up to `longest` tokens, up to where bigger batches stop paying."""
        if self.device.type != "cuda":
            return DEFAULT_TOKEN_BUDGET
        config = self.model.config
        # Per token: hidden-width activations, plus one row of the [heads, T, T] attention bias.
        elements = ACTIVATION_WIDTHS * config.hidden_size + config.num_attention_heads * longest
        return memory_token_budget(self.device, elements * torch.finfo(self.dtype).bits // 8, MAX_GPU_TOKEN_BUDGET)

    def embed(
        self,
        sequences: Sequence[str],
        token_budget: int | None = None,
        on_progress: ProgressCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        pretokenized: TokenizedSequences | None = None,
    ) -> Embeddings:
        """Embed `sequences` in length-sorted batches of at most `token_budget` tokens, padding
        included (None: `token_budget()` for each chunk's longest sequence), tokenized TOKENIZE_CHUNK at
        a time while the device embeds the previous chunk, or given as `pretokenized` (one row per
        sequence, in order, as `tokenized` makes them: nothing left to tokenize). See
        `embed_in_batches` for `on_progress`."""
        return embed_in_batches(self, sequences, token_budget, TOKENIZE_CHUNK, on_progress, clock, pretokenized)

    def tokenized(self, sequences: list[str]) -> TokenizedSequences:
        return tokenize(self.tokenizer, sequences)

    def batch_token_budget(self, tokens: TokenizedSequences) -> int:
        return self.token_budget(int(tokens.lengths.max()))

    @contextlib.contextmanager
    def in_float32(self) -> Iterator[None]:
        if self._float32_model is None:
            self._float32_model = load_dnabert_model(self.directory, self.device, torch.float32)
        half_precision, self.model = self.model, self._float32_model
        try:
            yield
        finally:
            self.model = half_precision

    @torch.inference_mode()
    def embed_batch(self, tokens: TokenizedSequences, batch: np.ndarray) -> torch.Tensor:
        """Right-padded batch through the model; float32 mean of the hidden states over unpadded
        tokens, left on the device."""
        lengths = tokens.lengths[batch]
        input_ids = ragged_rows(tokens.ids, tokens.starts, tokens.lengths, batch, fill=self.pad_id, width=int(lengths.max()))
        attention_mask = np.arange(input_ids.shape[1]) < lengths[:, None]
        weights = (attention_mask / lengths[:, None]).astype(np.float32)
        input_ids, attention_mask, weights = (self._to_device(array) for array in (input_ids, attention_mask, weights))
        hidden = self.model(input_ids, attention_mask)
        return torch.bmm(weights[:, None, :], hidden.float())[:, 0]

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)
