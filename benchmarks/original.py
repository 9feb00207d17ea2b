"""The original VirNucPro's chunking and translation, written the way its scripts do it: one record,
one chunk, one codon at a time in plain Python. Used as the oracle in tests and as the baseline in
benchmarks/translate.py; it follows docs/virnucpro-algorithm.md line by line and shares no code with
the package."""

from __future__ import annotations

import math

CODON_TABLE = {
    "TTT": "F",
    "TTC": "F",
    "TTA": "L",
    "TTG": "L",
    "CTT": "L",
    "CTC": "L",
    "CTA": "L",
    "CTG": "L",
    "ATT": "I",
    "ATC": "I",
    "ATA": "I",
    "ATG": "M",
    "GTT": "V",
    "GTC": "V",
    "GTA": "V",
    "GTG": "V",
    "TCT": "S",
    "TCC": "S",
    "TCA": "S",
    "TCG": "S",
    "CCT": "P",
    "CCC": "P",
    "CCA": "P",
    "CCG": "P",
    "ACT": "T",
    "ACC": "T",
    "ACA": "T",
    "ACG": "T",
    "GCT": "A",
    "GCC": "A",
    "GCA": "A",
    "GCG": "A",
    "TAT": "Y",
    "TAC": "Y",
    "TAA": "*",
    "TAG": "*",
    "CAT": "H",
    "CAC": "H",
    "CAA": "Q",
    "CAG": "Q",
    "AAT": "N",
    "AAC": "N",
    "AAA": "K",
    "AAG": "K",
    "GAT": "D",
    "GAC": "D",
    "GAA": "E",
    "GAG": "E",
    "TGT": "C",
    "TGC": "C",
    "TGA": "*",
    "TGG": "W",
    "CGT": "R",
    "CGC": "R",
    "CGA": "R",
    "CGG": "R",
    "AGT": "S",
    "AGC": "S",
    "AGA": "R",
    "AGG": "R",
    "GGT": "G",
    "GGC": "G",
    "GGA": "G",
    "GGG": "G",
}


def split_into_chunks(record_id: str, sequence: str, chunk_length: int) -> list[tuple[str, str]]:
    length = len(sequence)
    n = math.ceil(length / chunk_length)
    surplus = n * chunk_length - length
    lower = surplus // n
    upper = lower + 1
    k_up = surplus - lower * (n - 1)
    shifts = [upper] * k_up + [lower] * (n - 1 - k_up) + [0]
    chunks = []
    start = 0
    for i in range(n):
        if i > 0:
            start = start + chunk_length - shifts[i - 1]
        chunks.append((f"{record_id}_chunk_{i + 1}", sequence[start : start + chunk_length]))
    return chunks


def reverse_complement(sequence: str) -> str:
    complement = {"A": "T", "T": "A", "C": "G", "G": "C", "a": "t", "t": "a", "c": "g", "g": "c"}
    return "".join(complement.get(letter, letter) for letter in reversed(sequence))


def translate(sequence: str) -> str:
    protein = []
    for i in range(0, len(sequence) - 2, 3):
        protein.append(CODON_TABLE.get(sequence[i : i + 3], ""))
    return "".join(protein)


def six_frames(chunk_id: str, chunk: str) -> list[tuple[str, str, str]]:
    """(pair id, nucleotide, protein) for each kept frame, F1..F3 then R1..R3."""
    chunk = chunk.upper()
    kept = []
    for label, strand in (("F", chunk), ("R", reverse_complement(chunk))):
        for frame in (1, 2, 3):
            protein = translate(strand[frame - 1 :])
            if protein and "*" not in protein:
                kept.append((f"{chunk_id}{label}{frame}", strand[frame - 1 : frame + 3 * len(protein)], protein))
    return kept


def process_reads(reads: list[tuple[str, str]], chunk_length: int) -> list[tuple[str, str, str]]:
    return [
        pair
        for record_id, sequence in reads
        for chunk_id, chunk in split_into_chunks(record_id, sequence, chunk_length)
        for pair in six_frames(chunk_id, chunk)
    ]
