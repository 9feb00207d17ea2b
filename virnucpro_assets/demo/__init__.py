"""The offline demo: reads cut from a few bundled genomes, run through the whole asset graph."""

from __future__ import annotations

import os
from pathlib import Path

from virnucpro_assets.demo.reads import cut_reads, load_genomes, write_fasta
from virnucpro_assets.errors import VirnucproError
from virnucpro_assets.operations import add_sample, init_instance, materialize_sample, prepare_instance_home

_BUNDLED = Path(__file__).parent / "genomes"  # sources: genomes/SOURCES.tsv
GENOMES = [
    _BUNDLED / name
    for name in (
        "Human_chr17_hg19_40kb.fna.gz",
        "Kutzneria_sp744_KK037166_20kb.fna.gz",
        "phage_T7_NC_001604.fna.gz",
        "phage_phiX174.fna.gz",
    )
]
# `demo --train` trains on these and predicts reads of the held-back ones.
TRAINING_GENOMES = [
    _BUNDLED / name
    for name in (
        "phage_T7_NC_001604.fna.gz",
        "phage_lambda_NC_001416.fna.gz",
        "Human_chr17_hg19_40kb.fna.gz",
        "Kutzneria_sp744_KK037166_20kb.fna.gz",
        "Ecoli_contig_MIIJ01000039_60kb.fna.gz",
    )
]
HELD_BACK_GENOMES = [
    _BUNDLED / name
    for name in ("phage_phiX174.fna.gz", "Bacillus_phage_Gamma_NC_007458.fna.gz", "Arabidopsis_chloroplast_NC_000932_40kb.fna.gz")
]
DEMO_SAMPLE = "demo_reads"


def run_demo(home: Path) -> None:
    """Set up an instance under `home` (instance, store, demo inputs), register the demo sample and
    materialize all its partitions, then say where the results are."""
    print("Platform demo: tiny random-weight models; its predictions mean nothing biologically.", flush=True)
    models = prepare_demo_instance(home)
    os.environ["VIRNUCPRO_CLASSIFIER"] = str(models.classifier)
    reads_file = home / "inputs" / f"{DEMO_SAMPLE}.fasta.gz"
    if not reads_file.exists():
        reads_file.parent.mkdir(parents=True, exist_ok=True)
        write_fasta(cut_reads(load_genomes(GENOMES), count=240, lengths=(150, 300, 500, 800), seed=7), reads_file)
    sample, _ = add_sample(reads_file, DEMO_SAMPLE)
    locations = materialize_sample(sample.name)
    print(f"\nDemo sample {sample.name!r} done. Instance: {os.environ['DAGSTER_HOME']}  Store: {os.environ['VIRNUCPRO_STORE']}")
    for asset, location in sorted(locations.items()):
        print(f"  {asset}: {location}")
    report = locations["sample_report"]
    print("\nResults (platform demo, random models: the predictions mean nothing biologically):")
    for name in ("prediction_results.txt", "prediction_results_highestscore.csv", "per_read.tsv", "report.html"):
        print(f"  {report}/{name}")


def prepare_demo_instance(home: Path):
    """Point this process at the demo instance under `home` (its store too, unless VIRNUCPRO_STORE
    says otherwise) and at the tiny embedding models (written on first use), set the instance up,
    and return the demo models."""
    from virnucpro_assets import settings
    from virnucpro_assets.demo.models import build_demo_models

    if home.exists() and not home.is_dir():
        raise VirnucproError(f"--home {home}: not a directory")
    os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
    os.environ.setdefault("VIRNUCPRO_STORE", str(home / "store"))
    models = build_demo_models(home / "models", GENOMES, settings.chunk_length())
    os.environ["VIRNUCPRO_DNABERT_MODEL"] = str(models.dnabert)
    os.environ["VIRNUCPRO_ESM2_MODEL"] = str(models.esm2)
    prepare_instance_home(home / "dagster_home")
    init_instance()
    return models
