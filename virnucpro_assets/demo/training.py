"""Synthetic GenBank training genomes for the demo and the tests, and the training demo
(`virnucpro-assets demo --train`).

The sequences are real (the bundled genomes, or /work/shared/data/genomes); the CDS features are
NOT annotations: they come from a simple ORF rule written into the records — on each strand and
frame, every ATG up to the next stop codon, at least `min_codons` codons long — so the training
path has CDS translations to match frames against. Labels come from the file names (phage/virus
= viral)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from virnucpro_assets import settings
from virnucpro_assets.demo import HELD_BACK_GENOMES, TRAINING_GENOMES, prepare_demo_instance
from virnucpro_assets.demo.reads import cut_reads, load_genomes, write_fasta
from virnucpro_assets.errors import VirnucproError
from virnucpro_assets.operations import add_training_genomes, materialize_training_set, stored_locations, training_stages
from virnucpro_assets.progress import RunProgress
from virnucpro_assets.training.genbank import CdsFeature, write_genbank
from virnucpro_assets.training.registry import training_partition

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
            _write_into_place(path, lambda partial, records=records: write_genbank(records, partial))
        written.append((path, label))
    return written


TRAINING_SET = "demo"
HELD_BACK_SAMPLE = "demo_held_back"
# The original's blocks of 10,000 pairs are more than these few genomes give.
DEMO_BLOCK_SIZE = 10
HELD_BACK_READS_PER_CLASS = 40
HELD_BACK_LENGTHS = (150, 300, 500)
DECISIONS = ("virus", "others", "unscored")  # per_read.tsv's


def run_training_demo(home: Path) -> None:
    """`virnucpro-assets demo --train`: GenBank files with ORF-rule CDS features built from the
    bundled TRAINING_GENOMES, added to training set `demo`; its training pairs, embeddings, merged
    features and classifier materialized on the demo instance under `home`; then reads cut from
    the HELD_BACK_GENOMES predicted with that classifier (VIRNUCPRO_CLASSIFIER=trained:demo-<length>).

    The prediction runs as a new `virnucpro-assets run` process, as a user's next command would:
    a process builds its definitions from the settings once (the predictions asset's code version
    is the classifier's weight hash), and this one built them before the classifier existed."""
    import dagster as dg

    if settings.is_url_store(settings.store_root()):
        raise VirnucproError(
            f"VIRNUCPRO_STORE={settings.store_root()}: the training demo predicts with the classifier from the store, "
            "which needs a file-system store; unset VIRNUCPRO_STORE or give a directory"
        )
    os.environ.setdefault("VIRNUCPRO_TRAINING_BLOCK_SIZE", str(DEMO_BLOCK_SIZE))
    partition = training_partition(TRAINING_SET, settings.chunk_length())
    os.environ["VIRNUCPRO_CLASSIFIER"] = f"trained:{partition}"
    prepare_demo_instance(home)
    print(
        "Training demo: the embedding models are tiny and random, and the GenBank CDS features are synthetic\n"
        "(an ORF rule); the classifier is really trained, but its numbers say nothing about VirNucPro's accuracy.",
        flush=True,
    )

    for path, label in write_training_genomes(TRAINING_GENOMES, home / "inputs" / "training", max_length=60_000):
        entry, _, _ = add_training_genomes(path, label, TRAINING_SET)
        print(f"training set {partition}: {entry.name}: {entry.records} record(s), {entry.label} ({entry.group}), {path}")
    progress = RunProgress(partition, training_stages(partition))
    try:
        classifier_dir = Path(materialize_training_set(partition, observer=progress))
    finally:
        progress.close()

    reads_file, truth = held_back_reads(home / "inputs" / f"{HELD_BACK_SAMPLE}.fasta.gz")
    print(f"\npredicting reads of {', '.join(g.name for g in HELD_BACK_GENOMES)} (not in the training set) with it:", flush=True)
    command = [sys.executable, "-m", "virnucpro_assets.cli", "run", str(reads_file)]
    if subprocess.run(command, env=os.environ).returncode != 0:
        raise VirnucproError(f"predicting {reads_file} with the trained classifier failed (its error is above)")
    report = Path(stored_locations(dg.DagsterInstance.get(), HELD_BACK_SAMPLE)["sample_report"])
    metrics = json.loads((classifier_dir / "metrics.json").read_text())
    print(f"\nTraining demo done. Instance: {os.environ['DAGSTER_HOME']}  Store: {os.environ['VIRNUCPRO_STORE']}")
    print(f"  classifier {partition}: {classifier_dir / 'classifier.safetensors'}")
    print(f"  its metrics and plots: {classifier_dir / 'metrics.json'}, epochs.png, confusion.png, roc.png")
    print(f"  held-back sample {HELD_BACK_SAMPLE}: {report / 'per_read.tsv'}, report.html")
    print(
        f"test AUROC {metrics['test_auroc']:.4f} (kept epoch {metrics['kept_epoch']} of {len(metrics['epochs'])}; "
        "train.py's split by pair: chunks of one genome sit on both sides)"
    )
    for viral, counts in calls_by_truth(report / "per_read.tsv", truth).items():
        print(
            f"held-back {'viral' if viral else 'other'} reads: {counts['virus']} called virus, {counts['others']} others, "
            f"{counts['unscored']} unscored, of {sum(counts.values())}"
        )
    print(f"(to predict your own reads with it: VIRNUCPRO_CLASSIFIER=trained:{partition} virnucpro-assets run READS)")


def held_back_reads(path: Path) -> tuple[Path, dict[str, bool]]:
    """The held-back sample (written on first use: HELD_BACK_READS_PER_CLASS reads of each class
    cut from HELD_BACK_GENOMES) and whether each of their genome records is viral."""
    genomes = [(is_viral(genome), load_genomes([genome])) for genome in HELD_BACK_GENOMES]
    truth = {record_id: viral for viral, records in genomes for record_id, _ in records}
    if not path.exists():
        reads = []
        for wanted in (True, False):
            records = [record for viral, of_genome in genomes if viral == wanted for record in of_genome]
            reads.extend(cut_reads(records, count=HELD_BACK_READS_PER_CLASS, lengths=HELD_BACK_LENGTHS, seed=3))
        _write_into_place(path, lambda partial: write_fasta(reads, partial))
    return path, truth


def calls_by_truth(per_read: Path, truth: dict[str, bool]) -> dict[bool, dict[str, int]]:
    """{viral?: {decision: reads}} of a per_read.tsv whose read ids start with their genome
    record's id (as cut_reads names them)."""
    called = {viral: dict.fromkeys(DECISIONS, 0) for viral in (True, False)}
    with per_read.open(newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            called[truth[row["read_id"].split(":")[0]]][row["decision"]] += 1
    return called


def _write_into_place(path: Path, write) -> None:
    """`write(path)` in a hidden temporary directory next to `path`, then renamed into place: a
    killed demo never leaves a file that looks finished (a name ending in .gz is written gzipped)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".partial-") as directory:
        partial = Path(directory) / path.name
        write(partial)
        os.replace(partial, path)
