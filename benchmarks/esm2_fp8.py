"""Would FP8 matrix products make ESM-2 3B fast enough, and faithful enough? A study, not a feature.

    python -m benchmarks.esm2_fp8 [--layers 36 --dim 2560 --heads 40] [--reads 3000] [--device cuda]

A Hopper GPU multiplies float8 (e4m3) matrices at up to twice its fp16 rate. Here each linear layer
of ESM-2's transformer layers gets its weight in float8 with one scale per output feature, and its
input scaled per row (token) at run time; `torch._scaled_mm` accumulates in fp32 and applies both
scales and the bias. Everything else (embeddings, layer norms, attention, GELU, the residual stream)
stays in fp16. JSON lines:

- `gemm`: fp16 against FP8 TFLOP/s for each of the model's four matrix-product shapes at a full
  token budget (GPU only).
- per workload (150-bp reads, 500-bp chunks) and variant (`fp16`: the project's default path;
  `fp8 all linears`; `fp8 mlp only`: fc1 and fc2): tokens/s, the speed-up over fp16, and the
  agreement of every protein's vector with the fp32 run of the same (fp16-rounded) weights.

On a GPU every variant runs through torch.compile, as the assets do; on the CPU (a smoke run) none does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.common import emit
from benchmarks.gpu_common import CHUNK_LENGTH, READ_LENGTHS, agreement, cosines, kept_pairs, median_seconds, seconds
from virnucpro_assets.demo.models import random_esm2
from virnucpro_assets.models.esm2 import Esm2Embedder
from virnucpro_assets.models.identity import ModelIdentity

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max
SMALLEST_SCALE = 1e-12  # an all-zero row keeps a finite scale
VARIANTS = {"fp16": (), "fp8 all linears": ("qkv_proj", "out_proj", "fc1", "fc2"), "fp8 mlp only": ("fc1", "fc2")}


def rowwise_fp8(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`matrix` [M, K] as float8 rows and each row's fp32 scale [M, 1]: matrix ≈ fp8 * scale."""
    scale = matrix.abs().amax(dim=1, keepdim=True).float().clamp(min=SMALLEST_SCALE) / FP8_MAX
    return (matrix.float() / scale).to(FP8), scale


class Fp8Linear(nn.Module):
    """nn.Linear's function with a float8 weight and a float8 input, in and out in the input's dtype."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight, scale = rowwise_fp8(linear.weight.detach())
        self.register_buffer("weight", weight)
        self.register_buffer("weight_scale", scale.T.contiguous())  # [1, out], as _scaled_mm takes it
        self.register_buffer("bias", linear.bias.detach().to(linear.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, scale = rowwise_fp8(x.reshape(-1, x.shape[-1]))
        # The [out, in] weight transposed is the column-major right-hand side _scaled_mm wants.
        product = torch._scaled_mm(rows, self.weight.T, scale_a=scale, scale_b=self.weight_scale, bias=self.bias, out_dtype=x.dtype)
        return product.view(*x.shape[:-1], -1)


def with_fp8_linears(embedder: Esm2Embedder, names: tuple[str, ...]) -> Esm2Embedder:
    """`embedder` with the named linear layers of every transformer layer in FP8 (in place)."""
    for layer in embedder.model.layers:
        for name in names:
            owner = layer.self_attn if name.endswith("_proj") else layer
            setattr(owner, name, Fp8Linear(getattr(owner, name)))
    return embedder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=36)
    parser.add_argument("--dim", type=int, default=2560)
    parser.add_argument("--heads", type=int, default=40)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reads", type=int, default=3000, help="reads for the 150-bp workload; a third as many 500-bp chunks")
    parser.add_argument("--read-lengths", type=lambda s: [int(x) for x in s.split(",")], default=list(READ_LENGTHS))
    parser.add_argument("--budget", type=int, default=32768, help="tokens per batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--genomes", type=Path, help="a folder like ../shared/data/genomes (default: benchmarks.common's)")
    args = parser.parse_args()
    device = torch.device(args.device)
    compiled = device.type == "cuda"
    if compiled:
        gemm_rates(device, args.dim, args.budget)

    fair_esm = random_esm2(args.layers, args.dim, args.heads, seed=0, device=device)
    with torch.no_grad():  # the hub's weights are fp16: every variant runs the same ones
        for parameter in fair_esm.parameters():
            parameter.copy_(parameter.half())
    identity = ModelIdentity(f"random_esm2_t{args.layers}_{args.dim}", "")
    for read_length in args.read_lengths:
        reads = args.reads if read_length < CHUNK_LENGTH else args.reads // 3
        proteins = kept_pairs(reads, read_length, args.genomes).column("protein").to_pylist()
        tokens = sum(len(protein) + 2 for protein in proteins)
        reference = Esm2Embedder(fair_esm, fair_esm.alphabet, identity, device, torch.float32).embed(proteins).vectors
        fp16_rate = None
        for variant, names in VARIANTS.items():
            embedder = with_fp8_linears(Esm2Embedder(fair_esm, fair_esm.alphabet, identity, device, torch.float16), names)
            if compiled:
                from virnucpro_assets.models.compilation import compile_layers

                compile_layers(embedder.model.layers)
            seconds(lambda: embedder.embed(proteins, token_budget=args.budget), device)  # warm-up, compilation
            elapsed, result = median_seconds(lambda: embedder.embed(proteins, token_budget=args.budget), device, args.repeats)
            rate = tokens / elapsed
            fp16_rate = fp16_rate or rate
            emit(
                benchmark="esm2_fp8",
                read_length=read_length,
                variant=variant,
                compiled=compiled,
                proteins=len(proteins),
                tokens_per_s=round(rate),
                speedup_over_fp16=round(rate / fp16_rate, 2),
                vs_fp32=agreement(result.vectors, reference),
                cosine_quantile_0_001=round(float(np.quantile(cosines(result.vectors, reference), 0.001)), 6),
            )
            embedder = result = None  # free the model before the next variant compiles
            if compiled:
                torch.cuda.empty_cache()


def gemm_rates(device: torch.device, dim: int, rows: int) -> None:
    """fp16 and FP8 TFLOP/s of the layer's four products ([rows, in] x [in, out]), FP8 inputs prepared."""
    for inputs, outputs in ((dim, 3 * dim), (dim, dim), (dim, 4 * dim), (4 * dim, dim)):
        x = torch.randn(rows, inputs, device=device, dtype=torch.float16)
        w = torch.randn(outputs, inputs, device=device, dtype=torch.float16)
        (x8, x_scale), (w8, w_scale) = rowwise_fp8(x), rowwise_fp8(w)
        w_scale = w_scale.T.contiguous()
        flops = 2 * rows * inputs * outputs
        fp16, _ = median_seconds(lambda: x @ w.T, device, 10)
        fp8, _ = median_seconds(lambda: torch._scaled_mm(x8, w8.T, scale_a=x_scale, scale_b=w_scale, out_dtype=torch.float16), device, 10)
        emit(
            benchmark="esm2_fp8",
            gemm=[rows, inputs, outputs],
            fp16_tflops=round(flops / fp16 / 1e12, 1),
            fp8_tflops=round(flops / fp8 / 1e12, 1),
        )


if __name__ == "__main__":
    main()
