"""The offline demo: reads cut from a few bundled genomes, run through the whole asset graph."""

from __future__ import annotations

import os
from pathlib import Path

from virnucpro_assets.demo.reads import cut_reads, load_genomes, write_fasta
from virnucpro_assets.operations import add_sample, init_instance, materialize_sample, prepare_instance_home

GENOMES = sorted((Path(__file__).parent / "genomes").glob("*.fna.gz"))
DEMO_SAMPLE = "demo_reads"


def run_demo(home: Path) -> None:
    """Set up an instance under `home` (instance, store, demo inputs), register the demo sample and
    materialize all its partitions, then say where the results are."""
    from virnucpro_assets import settings
    from virnucpro_assets.demo.models import build_demo_models

    os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
    os.environ.setdefault("VIRNUCPRO_STORE", str(home / "store"))
    print("Platform demo: tiny random-weight models; its predictions mean nothing biologically.", flush=True)
    models = build_demo_models(home / "models", GENOMES, settings.chunk_length())
    os.environ["VIRNUCPRO_DNABERT_MODEL"] = str(models.dnabert)
    os.environ["VIRNUCPRO_ESM2_MODEL"] = str(models.esm2)
    os.environ["VIRNUCPRO_CLASSIFIER"] = str(models.classifier)

    prepare_instance_home(home / "dagster_home")
    init_instance()
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
