"""Reads cut from real genomes, for the demo, tests and benchmarks (random DNA has almost no
stop-free frames; real DNA does)."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from Bio.SeqIO.FastaIO import SimpleFastaParser


def load_genomes(paths: Sequence[Path]) -> list[tuple[str, str]]:
    """(name, sequence) of every record of the given (gzipped) FASTA files."""
    genomes = []
    for path in paths:
        with gzip.open(path, "rt") as handle:
            genomes.extend((title.split()[0], sequence.upper()) for title, sequence in SimpleFastaParser(handle))
    return genomes


def cut_reads(genomes: list[tuple[str, str]], count: int, lengths: Sequence[int], seed: int = 0) -> list[tuple[str, str]]:
    """`count` reads (id, sequence) at random places of random genomes, from either strand, each
    of a length drawn from `lengths`. Ids name their origin: `<genome>:<start>:<strand>:<n>`."""
    rng = np.random.default_rng(seed)
    complement = str.maketrans("ACGT", "TGCA")
    reads = []
    for n in range(count):
        name, sequence = genomes[rng.integers(len(genomes))]
        length = min(int(rng.choice(lengths)), len(sequence))
        start = int(rng.integers(len(sequence) - length + 1))
        read = sequence[start : start + length]
        strand = "+" if rng.random() < 0.5 else "-"
        if strand == "-":
            read = read.translate(complement)[::-1]
        reads.append((f"{name}:{start}:{strand}:{n}", read))
    return reads


def write_fasta(reads: list[tuple[str, str]], path: Path) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as handle:
        handle.writelines(f">{read_id}\n{sequence}\n" for read_id, sequence in reads)


def write_fastq(reads: list[tuple[str, str]], path: Path) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as handle:
        handle.writelines(f"@{read_id}\n{sequence}\n+\n{'I' * len(sequence)}\n" for read_id, sequence in reads)
