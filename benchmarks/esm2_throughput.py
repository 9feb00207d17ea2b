"""ESM-2 throughput: the project's embedder against the original's loop, on the same proteins and the
same random weights, in one process.

    python -m benchmarks.esm2_throughput [--layers 36 --dim 2560 --heads 40] [--reads 4000]
        [--budgets 16384,32768,65536] [--original-batches 3] [--compiled] [--device cuda]

The model has the 3B architecture by default (fair-esm's own module, random weights rounded to fp16
as the hub stores them, built on the device). For each workload (150-bp reads: ~50-residue
proteins; 500-bp chunks: ~166 residues), proteins are the stop-free frames of reads cut from real
genomes, and the script prints one JSON line per variant:

- `original`: fair-esm's module in fp32, FastaBatchedDataset batches of 2048 tokens, one mean and
  .cpu() per protein, as the original's extract_esm does. On 3B it is slow, so only its first
  --original-batches batches are timed (`proteins` says how many it ran).
- `project fp32`: Esm2Embedder in fp32, the reference for agreement.
- `project fp16` at each token budget, `project bf16`, and with --compiled `project fp16 compiled`.

Each line gives tokens/s (BOS/EOS counted, padding not), sequences/s, TFLOP/s of useful work (2 x
weights per token plus attention), the fraction of a bf16 matrix-product peak measured at the start
of the same run, the ratio to the original loop, and the min/mean cosine and max abs difference of
every protein's vector against the fp32 run. Timings are a second pass after a warm-up pass. With
--profile, the last variant's top kernels by device time (`benchmarks.gpu_common.top_kernels`).
"""

from __future__ import annotations

import argparse

import esm
import numpy as np
import torch

from benchmarks.common import emit
from benchmarks.gpu_common import (
    PRECISIONS,
    agreement,
    kept_pairs,
    measure_peak,
    median_seconds,
    seconds,
    throughput_arguments,
    top_kernels,
)
from virnucpro_assets.demo.models import random_esm2
from virnucpro_assets.models.esm2 import Esm2Embedder
from virnucpro_assets.models.identity import ModelIdentity

ORIGINAL_TOKENS_PER_BATCH = 2048


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=36)
    parser.add_argument("--dim", type=int, default=2560)
    parser.add_argument("--heads", type=int, default=40)
    parser.add_argument("--original-batches", type=int, default=3)
    throughput_arguments(parser, reads=4000, budgets=[16384, 32768, 65536])
    args = parser.parse_args()
    device, peak = measure_peak(args)

    fair_esm = random_esm2(args.layers, args.dim, args.heads, seed=0, device=device)
    with torch.no_grad():  # the hub stores fp16 weights: every precision below runs the same ones
        for parameter in fair_esm.parameters():
            parameter.copy_(parameter.half())
    identity = ModelIdentity(f"random_esm2_t{args.layers}_{args.dim}", "")

    def embedder(precision: str, compiled: bool = False) -> Esm2Embedder:
        return Esm2Embedder(fair_esm, fair_esm.alphabet, identity, device, PRECISIONS[precision], compiled)

    variants = [("fp16", budget, False) for budget in args.budgets] + [("bf16", args.budgets[0], False)] * args.bf16
    if args.compiled:
        variants.append(("fp16", args.budgets[0], True))
    embedders = {}
    for read_length in args.read_lengths:
        proteins = kept_pairs(args.reads, read_length, args.genomes).column("protein").to_pylist()
        lengths = np.array([len(protein) + 2 for protein in proteins])
        # Useful work per protein of n tokens and layer: 2 x the 12 C^2 weights per token, 4 C n for attention.
        flops = float(args.layers * (24 * args.dim**2 * lengths.sum() + 4 * args.dim * (lengths**2).sum()))
        common = {"benchmark": "esm2_throughput", "read_length": read_length, "mean_tokens": round(float(lengths.mean()), 1)}

        def record(variant: str, elapsed: float, tokens: int, count: int, **extra) -> dict:
            rate = tokens / elapsed
            tflops = flops * tokens / lengths.sum() / elapsed / 1e12
            line = {
                **common,
                "variant": variant,
                "proteins": count,
                "tokens": int(tokens),
                "seconds": round(elapsed, 3),
                "tokens_per_s": round(rate),
                "sequences_per_s": round(count / elapsed, 1),
                "tflops": round(tflops, 1),
                "fraction_of_matmul_peak": round(tflops / peak, 3),
                **extra,
            }
            emit(**line)
            return line

        original_seconds, original_vectors, original_tokens = original_loop(fair_esm, proteins, device, args.original_batches)
        original = record("original (fair-esm fp32, 2048-token batches, subset)", original_seconds, original_tokens, len(original_vectors))
        original_rate = original["tokens_per_s"]

        if args.fidelity:
            reference = embedders.setdefault(("fp32", False), embedder("fp32"))
            fp32_seconds, fp32_result = seconds(lambda: reference.embed(proteins), device)
            fp32_vectors = fp32_result.vectors
            subset = sorted(original_vectors)
            record(
                "project fp32 (single pass)",
                fp32_seconds,
                lengths.sum(),
                len(proteins),
                ratio_to_original=round(lengths.sum() / fp32_seconds / original_rate, 1),
                fair_esm_vs_project_fp32=agreement(np.stack([original_vectors[i] for i in subset]), fp32_vectors[subset]),
            )

        for precision, budget, compiled in variants:
            project = embedders.setdefault((precision, compiled), embedder(precision, compiled))
            warmup, _ = seconds(lambda: project.embed(proteins, token_budget=budget), device)  # kernels, allocator, compilation
            elapsed, result = median_seconds(lambda: project.embed(proteins, token_budget=budget), device, args.repeats)
            name = f"project {precision}{' compiled' if compiled else ''} budget {budget}"
            record(
                name,
                elapsed,
                lengths.sum(),
                len(proteins),
                ratio_to_original=round(lengths.sum() / elapsed / original_rate, 1),
                warmup_s=round(warmup, 2),
                vs_fp32=agreement(result.vectors, fp32_vectors) if args.fidelity else None,
            )
        if args.profile:
            emit(**common, variant=f"profile of {name}", **top_kernels(lambda: project.embed(proteins, token_budget=budget), device))
    if device.type == "cuda":
        emit(benchmark="esm2_throughput", peak_memory_gib=round(torch.cuda.max_memory_allocated(device) / 2**30, 1))


def original_loop(model, proteins: list[str], device: torch.device, max_batches: int) -> tuple[float, dict, int]:
    """The original's extract_esm on the first `max_batches` batches: (seconds, {index: vector}, tokens)."""
    alphabet = model.alphabet
    dataset = esm.data.FastaBatchedDataset([str(i) for i in range(len(proteins))], proteins)
    batches = dataset.get_batch_indices(ORIGINAL_TOKENS_PER_BATCH, extra_toks_per_seq=1)
    loader = torch.utils.data.DataLoader(dataset, collate_fn=alphabet.get_batch_converter(1024), batch_sampler=batches)

    def run(limit: int) -> dict:
        vectors = {}
        with torch.no_grad():
            for number, (labels, strs, toks) in enumerate(loader):
                if number == limit:
                    break
                toks = toks.to(device, non_blocking=True)
                representations = model(toks, repr_layers=[model.num_layers], return_contacts=False)["representations"]
                for i, label in enumerate(labels):
                    truncate_len = min(1024, len(strs[i]))
                    vectors[int(label)] = representations[model.num_layers][i, 1 : truncate_len + 1].mean(0).clone().cpu().numpy()
        return vectors

    run(1)  # warm-up
    elapsed, vectors = seconds(lambda: run(max_batches), device)
    return elapsed, vectors, sum(len(proteins[i]) + 2 for i in vectors)


if __name__ == "__main__":
    main()
