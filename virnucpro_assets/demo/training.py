"""Synthetic GenBank training genomes for the demo and the tests.

The sequences are real (the bundled genomes, or /work/shared/data/genomes); the CDS features are
NOT annotations: they come from a simple ORF rule written into the records — on each strand and
frame, every ATG up to the next stop codon, at least `min_codons` codons long — so the training
path has CDS translations to match frames against. Labels come from the file names (phage/virus
= viral)."""

from __future__ import annotations

from pathlib import Path

from virnucpro_assets.demo.reads import load_genomes
from virnucpro_assets.training.genbank import CdsFeature, write_genbank

_COMPLEMENT = str.maketrans("ACGTacgt", "TGCAtgca")


def orf_features(sequence: str, min_codons: int = 60) -> list[CdsFeature]:
    from Bio.Seq import Seq

    features = []
    upper = sequence.upper()
    for strand, text in ((1, upper), (-1, upper.translate(_COMPLEMENT)[::-1])):
        for offset in range(3):
            protein = str(Seq(text[offset : offset + 3 * ((len(text) - offset) // 3)]).translate())
            position = 0
            for piece in protein.split("*"):
                start = piece.find("M")
                if start >= 0 and len(piece) - start >= min_codons and "X" not in piece[start:]:
                    begin = offset + 3 * (position + start)
                    end = offset + 3 * (position + len(piece))
                    if strand == 1:
                        features.append(CdsFeature(begin, end, 1, piece[start:]))
                    else:
                        features.append(CdsFeature(len(text) - end, len(text) - begin, -1, piece[start:]))
                position += len(piece) + 1
    return sorted(features, key=lambda f: f.start)


def is_viral(path: Path) -> bool:
    return any(word in path.name.lower() for word in ("phage", "phix", "virus", "viral", "t7"))


def write_training_genomes(genomes: list[Path], directory: Path, max_length: int = 40_000) -> list[tuple[Path, str]]:
    """One GenBank file per FASTA genome file (records cut to `max_length` letters), with ORF-rule
    CDS features; returns (path, label) pairs."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for genome in genomes:
        label = "viral" if is_viral(genome) else "other"
        records = [
            (record_id, sequence[:max_length], orf_features(sequence[:max_length]), "synthetic CDS from an ORF rule, not annotation")
            for record_id, sequence in load_genomes([genome])
        ]
        path = directory / (genome.name.split(".")[0] + ".gbff.gz")
        if not path.exists():
            write_genbank(records, path)
        written.append((path, label))
    return written
