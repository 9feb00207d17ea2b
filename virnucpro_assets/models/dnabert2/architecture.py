"""DNABERT-2 / DNABERT-S encoder in plain PyTorch, for inference.

The architecture is MosaicBERT as released with DNABERT-2 (bert_layers.py of MAGICS-LAB/DNABERT_S):
BERT embeddings without position embeddings, post-LayerNorm encoder layers whose attention carries
an ALiBi bias, and a gated-GELU MLP. It is rewritten here so that no downloaded code is ever run.
Only inference is supported, so dropout is left out.

Module and attribute names mirror the reference checkpoint (`encoder.layer.N.attention.self.Wqkv`,
`mlp.layernorm`, ...) so that its state dict loads without renaming.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from virnucpro_assets.models.dnabert2.config import DnabertConfig

# On a GPU, the memory-efficient kernel first for the ALiBi-biased attention: PyTorch picks cuDNN's
# on Hopper, which took 25 % of DNABERT-S's GPU time on an H200 (0.94 ms a layer at 65,536 tokens,
# against 0.35 ms for the memory-efficient kernel).
GPU_ATTENTION_KERNELS = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]
# The memory-efficient kernel wants the bias's rows 16-byte aligned; unaligned, it copies it padded in every layer.
BIAS_ALIGNMENT = 8


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
    bias = alibi[None].masked_fill(padded_keys, float("-inf"))
    aligned = -(-length // BIAS_ALIGNMENT) * BIAS_ALIGNMENT
    if aligned == length:
        return bias
    storage = bias.new_empty((*bias.shape[:-1], aligned))
    storage[..., :length] = bias
    return storage[..., :length]


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
        kernels = sdpa_kernel(GPU_ATTENTION_KERNELS, set_priority=True) if hidden.is_cuda else contextlib.nullcontext()
        with kernels:
            for layer in self.encoder.layer:
                hidden = layer(hidden, bias)
        return hidden

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The reference's second output: tanh(dense(hidden at [CLS])), [B, hidden]."""
        if self.pooler is None:
            raise ValueError("this checkpoint has no pooler weights")
        return self.pooler(hidden)
