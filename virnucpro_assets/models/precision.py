"""Half precision against fp32 on a user's own weights and sequences: `virnucpro-assets compare-precision`.

The benchmarks measure agreement on random weights; real weights can behave differently (ESM-2 3B
has large activations, and a published refactor found bf16 scores drifting from fp32). This command
embeds the user's sequences twice with each model, once in fp32 and once in half precision, on the
same device, and reports per model the number of sequences, the minimum and mean cosine similarity
of their vectors and the largest absolute difference.

Inputs: a translated_proteins Parquet file (both models: `nucleotide` for DNABERT-S, `protein` for
ESM-2), a FASTA of nucleotide reads (chunked and translated as the pipeline does: both models), or a
FASTA of proteins (ESM-2 only). A FASTA whose letters are all A/C/G/T/N is taken as nucleotides.
"""

from __future__ import annotations

import argparse
import gc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from virnucpro_assets import settings
from virnucpro_assets.errors import InputFormatError

NUCLEOTIDE_LETTERS = set("ACGTNacgtn")
HALF_PRECISIONS = {"fp16": "float16", "bf16": "bfloat16"}  # torch dtype names; torch loads only when used


def add_command(commands) -> None:
    """The `compare-precision` subcommand, on the CLI's subparsers."""
    command = commands.add_parser(
        "compare-precision",
        help="compare half precision with fp32 on your own models and sequences",
        description=__doc__.split("\n\n")[1],
    )
    command.add_argument("input", type=Path, help="translated_proteins .parquet, nucleotide FASTA or protein FASTA")
    command.add_argument(
        "--esm2",
        default=settings.model_source("VIRNUCPRO_ESM2_MODEL", settings.DEFAULT_ESM2_MODEL),
        help="fair-esm model name or checkpoint (default: $VIRNUCPRO_ESM2_MODEL or the 3B model)",
    )
    command.add_argument(
        "--dnabert",
        default=settings.model_source("VIRNUCPRO_DNABERT_MODEL", settings.DEFAULT_DNABERT_MODEL),
        help="DNABERT-S directory or Hugging Face id (default: $VIRNUCPRO_DNABERT_MODEL or DNABERT-S)",
    )
    command.add_argument("--only", choices=["esm2", "dnabert"], help="compare one model only")
    command.add_argument("--precision", choices=sorted(HALF_PRECISIONS), default="fp16")
    command.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when there is one)")
    command.add_argument("--limit", type=int, help="use the first N sequences")
    command.add_argument("--chunk-length", type=int, default=settings.DEFAULT_CHUNK_LENGTH, help="for nucleotide FASTA input")


def run_command(args: argparse.Namespace) -> None:
    for agreement in compare_precision(
        args.input,
        esm2=None if args.only == "dnabert" else args.esm2,
        dnabert=None if args.only == "esm2" else args.dnabert,
        precision=args.precision,
        device=args.device,
        limit=args.limit,
        chunk_length=args.chunk_length,
    ):
        print(agreement)


@dataclass(frozen=True)
class Agreement:
    model: str
    precision: str
    sequences: int
    min_cosine: float
    mean_cosine: float
    max_abs_diff: float

    def __str__(self) -> str:
        return (
            f"{self.model}: {self.precision} vs fp32 on {self.sequences} sequences: min cosine {self.min_cosine:.6f}, "
            f"mean cosine {self.mean_cosine:.6f}, max abs diff {self.max_abs_diff:.3g}"
        )


def read_sequences(path: Path, chunk_length: int = 500) -> tuple[list[str], list[str]]:
    """(nucleotide strings for DNABERT-S, proteins for ESM-2) of a translated_proteins Parquet file,
    a nucleotide FASTA (translated here) or a protein FASTA (no nucleotides)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["nucleotide", "protein"])
        return table.column("nucleotide").to_pylist(), table.column("protein").to_pylist()
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    try:
        with open(path) as handle:
            records = list(SimpleFastaParser(handle))
    except (OSError, UnicodeDecodeError) as error:
        raise InputFormatError(f"{path}: cannot read it as FASTA: {error}") from error
    if not records:
        raise InputFormatError(f"{path}: no FASTA records")
    if all(set(sequence) <= NUCLEOTIDE_LETTERS for _, sequence in records):
        from virnucpro_assets.sequences.translation import translate_reads

        pairs = translate_reads([name for name, _ in records], [sequence for _, sequence in records], chunk_length)
        return pairs.column("nucleotide").to_pylist(), pairs.column("protein").to_pylist()
    return [], [sequence for _, sequence in records]


def compare_precision(
    path: Path,
    esm2: str | None,
    dnabert: str | None,
    precision: str = "fp16",
    device: str | None = None,
    limit: int | None = None,
    chunk_length: int = 500,
) -> list[Agreement]:
    """Agreement of `precision` with fp32 for each model given (None: skipped) on the sequences of `path`."""
    import torch

    from virnucpro_assets.models.dnabert2 import DnabertEmbedder
    from virnucpro_assets.models.esm2 import Esm2Embedder

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    nucleotides, proteins = read_sequences(path, chunk_length)
    runs = []
    if dnabert and nucleotides:
        runs.append(("dnabert", dnabert, DnabertEmbedder.from_source, nucleotides[:limit]))
    if esm2 and proteins:
        runs.append(("esm2", esm2, Esm2Embedder.from_source, proteins[:limit]))
    if not runs:
        raise InputFormatError(f"{path}: no sequences for the models asked for")
    results = []
    for label, source, load, sequences in runs:
        name, reference = _embed_and_free(load, source, device, torch.float32, sequences)
        _, half = _embed_and_free(load, source, device, getattr(torch, HALF_PRECISIONS[precision]), sequences)
        cosine = (half * reference).sum(1) / (np.linalg.norm(half, axis=1) * np.linalg.norm(reference, axis=1))
        differences = np.abs(half - reference)
        results.append(
            Agreement(
                f"{label} ({name})",
                precision,
                len(sequences),
                float(cosine.min()),
                float(cosine.mean()),
                float(differences.max()),
            )
        )
    return results


def _embed_and_free(load, source: str, device: str, dtype, sequences: list[str]) -> tuple[str, np.ndarray]:
    """The model's name and its vectors (float64); its memory is given back before the next model
    loads (an fp32 ESM-2 3B alone takes 11 GB)."""
    import torch

    embedder = load(source, device=device, dtype=dtype)
    name, vectors = embedder.identity.name, embedder.embed(sequences).vectors.astype(np.float64)
    del embedder
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return name, vectors
