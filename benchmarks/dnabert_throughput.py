"""DNABERT-S throughput: the project's embedder against the original's one-sequence-at-a-time loop,
on the same nucleotide strings and the same random weights, in one process.

    python -m benchmarks.dnabert_throughput [--hidden 768 --layers 12 --heads 12 --vocab 4096]
        [--reads 40000] [--budgets 16384,65536,131072] [--original-sequences 300] [--compiled]

The model is DNABERT-2's full-size architecture (intermediate 3072) with random weights, written in
the Hugging Face layout with a BPE tokenizer trained on the genomes, and loaded the way users load
models. Inputs are the kept frames' nucleotide strings of reads cut from real genomes (150-bp reads
and 500-bp chunks). One JSON line per variant:

- `original`: our DnabertModel in fp32, one tokenized sequence per call, mean over all tokens and
  .cpu() per sequence, as the original does; timed on its first --original-sequences sequences.
- `project fp32`: DnabertEmbedder in fp32, the reference for agreement.
- `project fp16` at each token budget, `project bf16`, and with --compiled `project fp16 compiled`.
- `tokenization only`: the embedder's tokenizing of all the inputs, which runs beside the device
  work; its rate bounds the embedder's.
- `..., token ids given`: the last project variant given the token ids (as the pipeline's CPU step
  `dnabert_tokens` makes them), so that the device's work alone is timed.

With --profile, the last variant's top kernels by device time, its token ids given (`benchmarks.gpu_common.top_kernels`).

Fields as in benchmarks/esm2_throughput.py; work per token is 2 x the 16 C^2 weights of a layer
(q/k/v, output, gated MLP in and out) plus 4 C n for attention over n tokens.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import emit, genome_files
from benchmarks.gpu_common import (
    PRECISIONS,
    agreement,
    kept_pairs,
    measure_peak,
    median_seconds,
    seconds,
    throughput_arguments,
    tokenizer_training_text,
    top_kernels,
)
from virnucpro_assets.demo.models import write_tiny_dnabert
from virnucpro_assets.demo.reads import load_genomes
from virnucpro_assets.models.dnabert2 import DnabertEmbedder, load_dnabert_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--original-sequences", type=int, default=300)
    throughput_arguments(parser, reads=40000, budgets=[16384, 65536, 131072])
    args = parser.parse_args()
    device, peak = measure_peak(args)

    genomes = load_genomes(sorted(args.genomes.glob("*/*.fna.gz")) if args.genomes else genome_files())
    with tempfile.TemporaryDirectory() as scratch:
        directory = write_tiny_dnabert(
            Path(scratch) / "dnabert",
            tokenizer_training_text(genomes),
            hidden_size=args.hidden,
            num_layers=args.layers,
            num_heads=args.heads,
            vocab_size=args.vocab,
            intermediate_size=4 * args.hidden,
        )
        embedders = {}

        def embedder(precision: str, compiled: bool = False) -> DnabertEmbedder:
            key = (precision, compiled)
            if key not in embedders:
                embedders[key] = DnabertEmbedder(directory, "random_dnabert", device, PRECISIONS[precision], compiled)
            return embedders[key]

        original_model = load_dnabert_model(directory, device, torch.float32)
        variants = [("fp16", budget, False) for budget in args.budgets] + [("bf16", args.budgets[0], False)] * args.bf16
        if args.compiled:
            variants.append(("fp16", args.budgets[-1], True))
        for read_length in args.read_lengths:
            sequences = kept_pairs(args.reads, read_length, args.genomes).column("nucleotide").to_pylist()
            reference = embedder("fp32")
            lengths = np.array([len(ids) for ids in reference.tokenize(sequences)])
            flops = float(args.layers * (32 * args.hidden**2 * lengths.sum() + 4 * args.hidden * (lengths**2).sum()))
            common = {"benchmark": "dnabert_throughput", "read_length": read_length, "mean_tokens": round(float(lengths.mean()), 1)}

            def record(variant: str, elapsed: float, tokens: int, count: int, **extra) -> dict:
                tflops = flops * tokens / lengths.sum() / elapsed / 1e12
                line = {
                    **common,
                    "variant": variant,
                    "sequences": count,
                    "tokens": int(tokens),
                    "seconds": round(elapsed, 3),
                    "tokens_per_s": round(tokens / elapsed),
                    "sequences_per_s": round(count / elapsed, 1),
                    "tflops": round(tflops, 2),
                    "fraction_of_matmul_peak": round(tflops / peak, 3),
                    **extra,
                }
                emit(**line)
                return line

            subset = sequences[: args.original_sequences]
            original_loop(original_model, reference, subset[:3], device)  # warm-up
            original_seconds, original_vectors = seconds(lambda: original_loop(original_model, reference, subset, device), device)
            original_rate = record(
                "original (fp32, one sequence per call, subset)", original_seconds, lengths[: len(subset)].sum(), len(subset)
            )["tokens_per_s"]

            if args.fidelity:
                fp32_seconds, fp32_result = seconds(lambda: reference.embed(sequences), device)
                fp32_vectors = fp32_result.vectors
                record(
                    "project fp32 (single pass)",
                    fp32_seconds,
                    lengths.sum(),
                    len(sequences),
                    ratio_to_original=round(lengths.sum() / fp32_seconds / original_rate, 1),
                    original_vs_project_fp32=agreement(original_vectors, fp32_vectors[: len(subset)]),
                )
            for precision, budget, compiled in variants:
                project = embedder(precision, compiled)
                warmup, _ = seconds(lambda: project.embed(sequences, token_budget=budget), device)  # kernels, allocator, compilation
                elapsed, result = median_seconds(lambda: project.embed(sequences, token_budget=budget), device, args.repeats)
                name = f"project {precision}{' compiled' if compiled else ''} budget {budget}"
                record(
                    name,
                    elapsed,
                    lengths.sum(),
                    len(sequences),
                    ratio_to_original=round(lengths.sum() / elapsed / original_rate, 1),
                    warmup_s=round(warmup, 2),
                    vs_fp32=agreement(result.vectors, fp32_vectors) if args.fidelity else None,
                )
            tokenize_seconds, tokens = median_seconds(lambda: project.tokenized(sequences), device, args.repeats)
            record("tokenization only", tokenize_seconds, lengths.sum(), len(sequences))
            # As in the pipeline, where the CPU step dnabert_tokens tokenized them: the GPU's work alone.
            given_seconds, given = median_seconds(
                lambda: project.embed(sequences, token_budget=budget, pretokenized=tokens), device, args.repeats
            )
            record(
                f"{name}, token ids given",
                given_seconds,
                lengths.sum(),
                len(sequences),
                ratio_to_original=round(lengths.sum() / given_seconds / original_rate, 1),
                vs_tokenizing_in_the_step=agreement(given.vectors, result.vectors),
            )
            if args.profile:
                profiled = lambda: project.embed(sequences, token_budget=budget, pretokenized=tokens)  # noqa: E731
                emit(**common, variant=f"profile of {name}, token ids given", **top_kernels(profiled, device))


def original_loop(model, embedder: DnabertEmbedder, sequences: list[str], device: torch.device) -> np.ndarray:
    """The original's DNABERT-S loop: tokenize one sequence, run it alone, mean over all its tokens, .cpu()."""
    vectors = []
    with torch.no_grad():
        for sequence in sequences:
            input_ids = torch.tensor([embedder.tokenizer.encode(sequence).ids]).to(device)
            hidden_states = model(input_ids)[0]
            vectors.append(torch.mean(hidden_states, dim=0).cpu().numpy())
    return np.stack(vectors)


if __name__ == "__main__":
    main()
