"""DNABERT-2 / DNABERT-S encoder in plain PyTorch, plus the embedder VirNucPro uses.

The architecture is MosaicBERT as released with DNABERT-2 (bert_layers.py of MAGICS-LAB/DNABERT_S):
BERT embeddings without position embeddings, post-LayerNorm encoder layers whose attention carries
an ALiBi bias, and a gated-GELU MLP. It is rewritten here so that no downloaded code is ever run.
Only inference is supported, so dropout is left out.

Module and attribute names mirror the reference checkpoint (`encoder.layer.N.attention.self.Wqkv`,
`mlp.layernorm`, ...) so that its state dict loads without renaming.
"""

from __future__ import annotations

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor
import json
import math
import pickle
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import numpy as np
import safetensors.torch
import tokenizers
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn

from virnucpro_assets.errors import ModelFormatError, ModelNotFoundError
from virnucpro_assets.models.batching import memory_token_budget, ragged_rows, token_budget_batches
from virnucpro_assets.models.compilation import compile_layers
from virnucpro_assets.models.embeddings import Embeddings
from virnucpro_assets.models.identity import ModelIdentity, hash_files

DEFAULT_DNABERT_SOURCE = "zhihan1996/DNABERT-S"
DEFAULT_TOKEN_BUDGET = 8192  # on the CPU
TOKENIZE_CHUNK = 16384  # sequences tokenized at a time, while the GPU embeds the previous ones
# On a GPU: beyond this many tokens per batch the matrix products run no faster (benchmarks/dnabert_throughput.py).
MAX_GPU_TOKEN_BUDGET = 65536
# Hidden-width vectors per token alive at once in a layer (hidden, q/k/v, context, the gated MLP's
# 8x-wide projection and its 4x-wide product, the fp32 copy for pooling), with room for the allocator.
ACTIVATION_WIDTHS = 32

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


@dataclass(frozen=True)
class DnabertConfig:
    """The fields of a Hugging Face DNABERT-2 config.json that the model uses.
    Defaults are those of the reference BertConfig, for keys a config.json may leave out."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    vocab_size: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    # Not used for padding: the real DNABERT-S config says 0, which is [UNK]; batches are padded with
    # the tokenizer's [PAD] id, and padded keys are masked anyway.
    pad_token_id: int = 0
    # The reference precomputes ALiBi for this many positions and extends it for longer inputs;
    # here the bias is built for each input's length, so any length works.
    alibi_starting_size: int = 512

    @classmethod
    def from_json(cls, path: Path) -> DnabertConfig:
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ModelFormatError(f"{path}: cannot read the model config: {error}") from error
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise ModelFormatError(f"{path}: model config lacks {', '.join(missing)}")
        config = cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})
        if config.hidden_size % config.num_attention_heads:
            raise ModelFormatError(
                f"{path}: hidden_size {config.hidden_size} is not a multiple of "
                f"num_attention_heads {config.num_attention_heads}"
            )
        return config


def alibi_slopes(num_heads: int) -> list[float]:
    """Per-head ALiBi slopes in head order, with the reference's rule for head counts that are not
    a power of two: the slopes for the largest power of two p below, then every other slope of the
    2p sequence (the ones not used yet), unsorted."""

    def power_of_two_slopes(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start * start**i for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_two_slopes(num_heads)
    below = 2 ** math.floor(math.log2(num_heads))
    return power_of_two_slopes(below) + alibi_slopes(2 * below)[0::2][: num_heads - below]


@functools.lru_cache
def slopes_tensor(num_heads: int, device: torch.device) -> torch.Tensor:
    """alibi_slopes as a float32 tensor on `device`, made once: copying a new one from the host for
    every batch would make the host wait for the GPU."""
    return torch.tensor(alibi_slopes(num_heads), dtype=torch.float32, device=device)


def attention_bias(attention_mask: torch.Tensor, num_heads: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention mask [B, heads, T, T]: the ALiBi bias -slope * |i - j| (float32, like the
    reference), and -inf for padded keys. Every query keeps its unpadded keys, so no row is all -inf."""
    length = attention_mask.shape[1]
    positions = torch.arange(length, device=attention_mask.device)
    distance = (positions[None, :] - positions[:, None]).abs()
    slopes = slopes_tensor(num_heads, attention_mask.device)
    alibi = (slopes[:, None, None] * -distance).to(dtype)
    padded_keys = ~attention_mask.bool()[:, None, None, :]
    return alibi[None].masked_fill(padded_keys, float("-inf"))


class TokenEmbeddings(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Every token has token type 0; position enters only through the ALiBi bias.
        summed = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(summed)


class SelfAttention(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, length, width = hidden.shape
        # Feature layout of the fused projection: (q/k/v, head, head dim).
        qkv = self.Wqkv(hidden).view(batch, length, 3, self.num_heads, width // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, T, head dim]
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        return context.transpose(1, 2).reshape(batch, length, width)


class AttentionOutput(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, context: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(context) + residual)


class Attention(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.self = SelfAttention(config)
        self.output = AttentionOutput(config)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden, bias), hidden)


class GatedMlp(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # Two products on the row halves of the fused weight instead of one product split in two:
        # contiguous halves keep GELU and the gating product on vectorized kernels (+12-14 %
        # DNABERT-S tokens/s on an H100, 150-bp reads and 500-bp chunks).
        weight_gate, weight_value = self.gated_layers.weight.split(self.intermediate_size)
        gated = F.gelu(F.linear(hidden, weight_gate), approximate="none")
        gated = gated.mul_(F.linear(hidden, weight_value))
        return self.layernorm(self.wo(gated) + hidden)


class Layer(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.attention = Attention(config)
        self.mlp = GatedMlp(config)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attention(hidden, bias))


class Encoder(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))


class Pooler(nn.Module):
    def __init__(self, config: DnabertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class DnabertModel(nn.Module):
    """The DNABERT-2 encoder (the reference's `BertModel`). The pooler exists only when
    `with_pooler` is set: checkpoints saved from the MLM model have none."""

    def __init__(self, config: DnabertConfig, with_pooler: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = TokenEmbeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config) if with_pooler else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states [B, T, hidden] for input_ids [B, T]. attention_mask [B, T] is nonzero
        for real tokens; padded keys are masked out, and what comes out at padded positions is
        meaningless. Without a mask every token is real."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        hidden = self.embeddings(input_ids)
        bias = attention_bias(attention_mask, self.config.num_attention_heads, hidden.dtype)
        for layer in self.encoder.layer:
            hidden = layer(hidden, bias)
        return hidden

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The reference's second output: tanh(dense(hidden at [CLS])), [B, hidden]."""
        if self.pooler is None:
            raise ValueError("this checkpoint has no pooler weights")
        return self.pooler(hidden)


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


def load_dnabert_model(
    directory: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> DnabertModel:
    """DnabertModel from config.json and the weight file of `directory`, in eval mode on `device`."""
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
        raise ModelFormatError(
            f"{weights_path}: weights do not fit the DNABERT-2 model of {CONFIG_FILE}; " + "; ".join(problems)
        )

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
        self.identity = ModelIdentity(name=name, content_hash=hash_files([find_weights_file(directory)]))
        self._float32_model: DnabertModel | None = None  # loaded when a half-precision vector is not finite

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
        """Token ids per sequence, [CLS] ... [SEP], unpadded and untruncated."""
        # The fast variant skips character offsets, which nothing here uses; the ids are the same.
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

    def embed(self, sequences: Sequence[str], token_budget: int | None = None) -> Embeddings:
        """Embed `sequences` in length-sorted batches of at most `token_budget` tokens, padding
        included (None: `token_budget()`).

        The GPU does not wait for the host: sequences are tokenized TOKENIZE_CHUNK at a time on a
        background thread while the GPU runs the previous chunk's batches; each batch goes to the
        device from pinned memory and its vectors come back the same way, so the host only waits
        for the GPU once, at the end."""
        sequences = list(sequences)
        chunk_starts = range(0, len(sequences), TOKENIZE_CHUNK)
        in_batch_order = torch.empty((len(sequences), self.dim), pin_memory=self.device.type == "cuda")
        rows, chunks, filled = [], [], 0
        with ThreadPoolExecutor(1) as background:
            tokenized = background.map(self._tokenized, (sequences[start : start + TOKENIZE_CHUNK] for start in chunk_starts))
            for start, tokens in zip(chunk_starts, tokenized):
                chunks.append((start, tokens))
                budget = token_budget or self.token_budget(int(tokens.lengths.max()))
                for batch in token_budget_batches(tokens.lengths, budget):
                    in_batch_order[filled : filled + len(batch)].copy_(self._embed_batch(self.model, tokens, batch), non_blocking=True)
                    rows.append(start + batch)
                    filled += len(batch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        vectors = np.zeros((len(sequences), self.dim), dtype=np.float32)
        if rows:
            vectors[np.concatenate(rows)] = in_batch_order.numpy()
        if self.dtype != torch.float32:
            for start, tokens in chunks:
                self._redo_non_finite_in_float32(vectors[start : start + len(tokens.lengths)], tokens, token_budget)
        return Embeddings(vectors=vectors, tokens=int(sum(tokens.lengths.sum() for _, tokens in chunks)))

    def _tokenized(self, sequences: list[str]) -> TokenizedSequences:
        token_ids = self.tokenize(sequences)
        lengths = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(token_ids))
        ids = np.fromiter(itertools.chain.from_iterable(token_ids), dtype=np.int64, count=int(lengths.sum()))
        return TokenizedSequences(ids, np.cumsum(lengths) - lengths, lengths)

    def _redo_non_finite_in_float32(self, vectors: np.ndarray, tokens: TokenizedSequences, token_budget: int | None) -> None:
        non_finite = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if non_finite.size == 0:
            return
        if self._float32_model is None:
            self._float32_model = load_dnabert_model(self.directory, self.device, torch.float32)
        budget = token_budget or self.token_budget(int(tokens.lengths.max()))
        for batch in token_budget_batches(tokens.lengths[non_finite], budget):
            vectors[non_finite[batch]] = self._embed_batch(self._float32_model, tokens, non_finite[batch]).cpu().numpy()

    def _embed_batch(self, model: DnabertModel, tokens: TokenizedSequences, batch: np.ndarray) -> torch.Tensor:
        """Mean vectors of one batch, float32 on the device; halves the batch on CUDA out-of-memory."""
        try:
            return self._mean_hidden(model, tokens, batch)
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1:
                raise
        # Split outside the except block, so the failed attempt's tensors are freed first.
        torch.cuda.empty_cache()
        half = len(batch) // 2
        return torch.cat([self._embed_batch(model, tokens, batch[:half]), self._embed_batch(model, tokens, batch[half:])])

    @torch.inference_mode()
    def _mean_hidden(self, model: DnabertModel, tokens: TokenizedSequences, batch: np.ndarray) -> torch.Tensor:
        """Right-padded batch through `model`; float32 mean of the hidden states over unpadded tokens."""
        lengths = tokens.lengths[batch]
        input_ids = ragged_rows(tokens.ids, tokens.starts, tokens.lengths, batch, fill=self.pad_id, width=int(lengths.max()))
        attention_mask = np.arange(input_ids.shape[1]) < lengths[:, None]
        weights = (attention_mask / lengths[:, None]).astype(np.float32)
        input_ids, attention_mask, weights = (
            self._to_device(array) for array in (input_ids, attention_mask, weights)
        )
        hidden = model(input_ids, attention_mask)
        return torch.bmm(weights[:, None, :], hidden.float())[:, 0]

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)


@dataclass(frozen=True)
class TokenizedSequences:
    ids: np.ndarray  # token ids of all sequences, concatenated
    starts: np.ndarray  # where each sequence begins in `ids`
    lengths: np.ndarray  # tokens per sequence, [CLS] and [SEP] included


SPECIAL_TOKENS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")  # ids 0..4, as in DNABERT-2


def write_tiny_dnabert(
    directory: str | Path,
    training_text: Sequence[str],
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 256,
    seed: int = 0,
    intermediate_size: int | None = None,
) -> Path:
    """Write a small random DNABERT-2 in the Hugging Face layout (config.json, model.safetensors,
    tokenizer.json), for tests and the offline demo. Its BPE tokenizer is trained on
    `training_text` with DNABERT-2's special tokens and [CLS] ... [SEP] template; it is not the real
    vocabulary, and the weights mean nothing. The MLP is 2 x hidden wide unless `intermediate_size`
    says otherwise (DNABERT-S: hidden 768, 12 layers, 12 heads, intermediate 3072, vocabulary 4096)."""
    from tokenizers import models, processors, trainers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tokenizer.train_from_iterator(list(training_text), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    tokenizer.save(str(directory / TOKENIZER_FILE))

    config = DnabertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size or 2 * hidden_size,
        vocab_size=vocab_size,
    )
    generator = torch.Generator().manual_seed(seed)
    model = DnabertModel(config, with_pooler=False)
    state = {}
    for name, parameter in model.state_dict().items():
        noise = torch.randn(parameter.shape, generator=generator)
        if name.endswith("LayerNorm.weight") or name.endswith("layernorm.weight"):
            state[name] = 1 + 0.1 * noise
        elif parameter.ndim > 1:
            state[name] = noise / parameter.shape[-1] ** 0.5
        else:
            state[name] = 0.02 * noise
    safetensors.torch.save_file(state, directory / WEIGHT_FILES[0])
    fields_written = {f.name: getattr(config, f.name) for f in fields(DnabertConfig)}
    (directory / CONFIG_FILE).write_text(json.dumps({"model_type": "bert", **fields_written}, indent=2) + "\n")
    return directory
