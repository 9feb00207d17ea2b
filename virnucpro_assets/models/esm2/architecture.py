"""ESM-2's forward pass for embeddings, faster than fair-esm's ESM2 module and the same function.

Same math as fair-esm's `esm.model.esm2.ESM2` in inference: token embeddings with its token-dropout
rescaling (x * (1 - 0.15 * 0.8) / (1 - mask ratio), the mask ratio being 0 when no <mask> token is
present) and zeroed padding; pre-LayerNorm layers whose attention applies rotary position embeddings
to queries and keys; exact (erf) GELU; the final layer norm. What changes is how it is computed:
the q/k/v projections are one matrix product, rotary runs on queries and keys together, attention
is PyTorch's fused scaled-dot-product kernel, and nothing that embeddings do not need
(language-model head, contact head, attention maps) is computed. On a GPU in half precision, fc1's
bias and GELU run in the matrix product's epilogue (cuBLASLt), which computes GELU's tanh
approximation: it differs from erf by at most 5e-4, below half precision's own rounding at the
values where the two differ most (`approximate_gelu`).

Parameter names follow fair-esm's (after its loader strips the hub's `encoder.` prefixes), except
that `q_proj`, `k_proj` and `v_proj` are stacked into `qkv_proj` when a checkpoint is loaded.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

MASK_RATIO_TRAIN = 0.15 * 0.8  # fair-esm's token-dropout constant
ROTARY_BASE = 10000.0
# Weights fair-esm's module has and this one does not need, or computes itself.
UNUSED_WEIGHTS = ("lm_head.", "contact_head.")
ROTARY_BUFFER = "self_attn.rot_emb.inv_freq"
# On a GPU, attention kernels in this order rather than PyTorch's (cuDNN first on Hopper): flash
# takes unpadded batches, the memory-efficient kernel padded ones. +2 % (150-bp reads) and +7 %
# (500-bp chunks) ESM-2 3B tokens/s on an H100, same vectors; the others remain as fall-backs.
GPU_ATTENTION_KERNELS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]
# Up to this many tokens the memory-efficient kernel goes first, padded or not: at 51 tokens (150-bp
# reads, ESM-2 3B's 40 heads) it took 0.34 ms against flash's 0.64 ms on an H200; at 168 flash is faster.
SHORT_ATTENTION_TOKENS = 64
SHORT_ATTENTION_KERNELS = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]


def rotary_tables(length: int, head_dim: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin [length, 1, 1, head_dim] for `rotate`, computed in fp32 as fair-esm does."""
    inverse_frequencies = 1.0 / ROTARY_BASE ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    angles = torch.outer(torch.arange(length, device=device).float(), inverse_frequencies)
    # fair-esm's rotate_half(x) * sin is cat(-x2, x1) * cat(sin, sin) = roll(x) * cat(-sin, sin).
    cos = torch.cat((angles.cos(), angles.cos()), dim=-1)
    signed_sin = torch.cat((-angles.sin(), angles.sin()), dim=-1)
    return cos[:, None, None].to(dtype), signed_sin[:, None, None].to(dtype)


def gelu_linear(x: torch.Tensor, linear: nn.Linear, approximate: bool) -> torch.Tensor:
    """gelu(linear(x)): exact (erf) GELU, or with `approximate` GELU's tanh approximation, which on a
    GPU runs with the bias in the matrix product's epilogue (one pass over the 4x-wide activations
    fewer: -3 % of a compiled ESM-2 3B layer's time on an H200)."""
    if not approximate:
        return F.gelu(linear(x))
    if not x.is_cuda:
        return F.gelu(linear(x), approximate="tanh")
    flat = torch._addmm_activation(linear.bias, x.reshape(-1, x.shape[-1]), linear.weight.t(), use_gelu=True)
    return flat.view(*x.shape[:-1], flat.shape[-1])


def rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x [B, T, ..., head_dim] (positions along dim 1)."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), signed_sin)


class Attention(nn.Module):
    def __init__(self, embed_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv_proj = nn.Linear(embed_dim, 3 * embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x, cos, signed_sin, attention_mask):
        batch, length, width = x.shape
        qkv = self.qkv_proj(x).view(batch, length, 3, self.heads, width // self.heads)
        query, key = rotate(qkv[:, :, :2], cos, signed_sin).unbind(2)
        value = qkv[:, :, 2]
        # [B, T, heads, head dim] -> [B, heads, T, head dim]; the default scale is fair-esm's head_dim**-0.5.
        context = F.scaled_dot_product_attention(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask=attention_mask
        )
        return self.out_proj(context.transpose(1, 2).reshape(batch, length, width))


class Layer(nn.Module):
    def __init__(self, embed_dim: int, heads: int):
        super().__init__()
        self.self_attn = Attention(embed_dim, heads)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, 4 * embed_dim)
        self.fc2 = nn.Linear(4 * embed_dim, embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim)

    def forward(self, x, cos, signed_sin, attention_mask, approximate_gelu: bool = False):
        x = x + self.self_attn(self.self_attn_layer_norm(x), cos, signed_sin, attention_mask)
        return x + self.fc2(gelu_linear(self.final_layer_norm(x), self.fc1, approximate_gelu))


class FastEsm2(nn.Module):
    def __init__(self, num_layers: int, embed_dim: int, attention_heads: int, alphabet_size: int, padding_idx: int, mask_idx: int):
        super().__init__()
        self.num_layers = num_layers
        self.embed_dim = embed_dim
        self.attention_heads = attention_heads
        self.padding_idx = padding_idx
        self.mask_idx = mask_idx
        self.embed_tokens = nn.Embedding(alphabet_size, embed_dim, padding_idx=padding_idx)
        self.layers = nn.ModuleList(Layer(embed_dim, attention_heads) for _ in range(num_layers))
        self.emb_layer_norm_after = nn.LayerNorm(embed_dim)
        # None: GELU's tanh approximation on a GPU in half precision (see gelu_linear), erf otherwise.
        self.approximate_gelu: bool | None = None

    @classmethod
    def from_fair_esm_state(
        cls,
        state: dict[str, torch.Tensor],
        num_layers: int,
        embed_dim: int,
        attention_heads: int,
        alphabet,
        device: torch.device,
        dtype: torch.dtype,
    ) -> FastEsm2:
        """The model of a fair-esm ESM-2 state dict (prefixes already stripped, as fair-esm's loader
        does), built straight on `device` in `dtype`. Raises KeyError/ValueError when the weights do
        not fit the architecture."""
        # Not on the meta device: initialising there costs seconds of imports (torch._dynamo) per process.
        with torch.device(device):
            model = cls(num_layers, embed_dim, attention_heads, len(alphabet), alphabet.padding_idx, alphabet.mask_idx)
        state = {
            key: tensor.to(device=device, dtype=dtype)
            for key, tensor in state.items()
            if not key.startswith(UNUSED_WEIGHTS) and not key.endswith(ROTARY_BUFFER)
        }
        for layer in range(model.num_layers):
            prefix = f"layers.{layer}.self_attn."
            for kind in ("weight", "bias"):
                parts = [state.pop(f"{prefix}{projection}_proj.{kind}") for projection in "qkv"]
                state[f"{prefix}qkv_proj.{kind}"] = torch.cat(parts)
        expected = model.state_dict()
        if state.keys() != expected.keys():
            raise KeyError(f"missing {sorted(expected.keys() - state.keys())[:5]}, unexpected {sorted(state.keys() - expected.keys())[:5]}")
        misshapen = [key for key, tensor in state.items() if tensor.shape != expected[key].shape]
        if misshapen:
            raise ValueError(f"weights of the wrong shape for the config: {misshapen[:5]}")
        model.load_state_dict(state, assign=True)
        return model.eval().requires_grad_(False)

    @classmethod
    def from_fair_esm(cls, model: nn.Module) -> FastEsm2:
        """The same weights as a fair-esm ESM2 module, on its device and in its dtype."""
        weight = model.embed_tokens.weight
        return cls.from_fair_esm_state(
            model.state_dict(),
            model.num_layers,
            model.embed_dim,
            model.attention_heads,
            model.alphabet,
            weight.device,
            weight.dtype,
        )

    def forward(self, tokens: torch.Tensor, repr_layers=()) -> dict:
        """fair-esm's calling convention: tokens [B, T] (BOS + residues + EOS, right-padded) in, the
        hidden states of `repr_layers` out as {"representations": {layer: [B, T, C]}}, the last
        layer's after the final layer norm. Tokens on the CPU are moved to the model's device without
        waiting for it; whether the batch is padded is decided from them without a device round trip."""
        device = self.embed_tokens.weight.device
        padded = bool(tokens.eq(self.padding_idx).any())
        tokens = tokens.to(device, non_blocking=True)
        padding = tokens.eq(self.padding_idx)
        is_mask = tokens.eq(self.mask_idx)

        x = self.embed_tokens(tokens).masked_fill(is_mask[..., None], 0.0)
        mask_ratio = is_mask.sum(-1) / (~padding).sum(-1)
        x = x * ((1 - MASK_RATIO_TRAIN) / (1 - mask_ratio)).to(x.dtype)[:, None, None]
        x = x.masked_fill(padding[..., None], 0.0)

        # A boolean mask keeps SDPA off its flash kernel, so it is only passed when there is padding.
        attention_mask = ~padding[:, None, None, :] if padded else None
        cos, signed_sin = rotary_tables(tokens.shape[1], self.embed_dim // self.attention_heads, device, x.dtype)
        wanted = set(repr_layers)
        representations = {0: x} if 0 in wanted else {}
        order = SHORT_ATTENTION_KERNELS if tokens.shape[1] <= SHORT_ATTENTION_TOKENS else GPU_ATTENTION_KERNELS
        kernels = sdpa_kernel(order, set_priority=True) if device.type == "cuda" else contextlib.nullcontext()
        approximate_gelu = self.approximate_gelu
        if approximate_gelu is None:
            approximate_gelu = device.type == "cuda" and x.dtype != torch.float32
        with kernels:
            for index, layer in enumerate(self.layers, start=1):
                x = layer(x, cos, signed_sin, attention_mask, approximate_gelu)
                if index in wanted:
                    representations[index] = x
        if self.num_layers in wanted:
            representations[self.num_layers] = self.emb_layer_norm_after(x)
        return {"representations": representations}
