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


def pytest_collection_modifyitems(items):
    """The tests marked `long` first, longest first; the others after them, in collection order."""

    def seconds(item) -> float:
        marker = item.get_closest_marker("long")
        return marker.args[0] if marker else 0

    items.sort(key=seconds, reverse=True)


@pytest.fixture(scope="session")
def genomes():
    return load_genomes(GENOMES)


@pytest.fixture(scope="session")
def genome_reads(genomes):
    """Reads of mixed lengths cut from the bundled real genomes."""
    return cut_reads(genomes, count=400, lengths=(1, 2, 5, 150, 299, 300, 301, 499, 500, 501, 1000, 1777), seed=11)


@pytest.fixture(scope="session")
def s3_environment(tmp_path_factory):
    """A moto S3 server for the session (virnucpro_assets_tests.object_store)."""
    from virnucpro_assets_tests.object_store import s3_server

    with s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as environment:
        yield environment


@pytest.fixture
def s3_bucket(s3_environment, monkeypatch, request):
    """A new bucket, with this process's S3 clients pointed at the server; yields (s3 URL, s3fs)."""
    import re
    import uuid

    import s3fs

    from virnucpro_assets_tests.object_store import new_bucket

    for key, value in s3_environment.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:8]
    yield f"s3://{name}", new_bucket(s3_environment, name)
    s3fs.S3FileSystem.clear_instance_cache()
