import os
from pathlib import Path

import pytest

from virnucpro_assets.demo import GENOMES
from virnucpro_assets.demo.reads import cut_reads, load_genomes

# Tests never read the user's instance or store.
os.environ.pop("DAGSTER_HOME", None)
os.environ.pop("VIRNUCPRO_STORE", None)
os.environ.setdefault("VIRNUCPRO_SHARDS", "3")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def genomes():
    return load_genomes(GENOMES)


@pytest.fixture(scope="session")
def genome_reads(genomes):
    """Reads of mixed lengths cut from the bundled real genomes."""
    return cut_reads(genomes, count=400, lengths=(1, 2, 5, 150, 299, 300, 301, 499, 500, 501, 1000, 1777), seed=11)
