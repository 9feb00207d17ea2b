import dagster as dg
import pytest

from virnucpro_assets.definitions import defs, partitions
from virnucpro_assets.demo import GENOMES
from virnucpro_assets.demo.models import build_demo_models
from virnucpro_assets.demo.reads import write_fasta
from virnucpro_assets.pipeline import jobs
from virnucpro_assets.pipeline.gpu import GpuResource
from virnucpro_assets.pipeline.models import ModelsResource
from virnucpro_assets.pipeline.partitions import SAMPLES
from virnucpro_assets.pipeline.resources import store_resources
from virnucpro_assets.samples import SampleRegistry
from virnucpro_assets.sequences.sharding import shard_of_reads


class Pipeline:
    """An ephemeral instance and a temporary store with this project's assets and the tiny demo models."""

    def __init__(self, tmp_path, models):
        self.tmp_path = tmp_path
        self.instance = dg.DagsterInstance.ephemeral()
        self.store_root = tmp_path / "store"
        self.models = models
        self.resources = {
            **defs.resources,
            **store_resources(str(self.store_root)),
            "models": ModelsResource(dnabert=str(models.dnabert), esm2=str(models.esm2), classifier=str(models.classifier)),
            "gpu": GpuResource(lease_dir=str(tmp_path / "leases")),
        }

    def register(self, reads, name):
        path = self.tmp_path / f"{name}.fasta"
        if isinstance(reads, bytes):
            path.write_bytes(reads)
        else:
            write_fasta(reads, path)
        sample, _ = SampleRegistry(self.store_root).register(path, name)
        self.instance.add_dynamic_partitions(SAMPLES, [sample.name])
        return sample.name

    def materialize(self, selection, partition, raise_on_error=True):
        """Materialize `selection` for one partition, the assets' checks included as in real runs."""
        return dg.materialize(
            [*defs.assets, *defs.asset_checks],
            instance=self.instance,
            resources=self.resources,
            selection=selection,
            partition_key=str(partition),
            raise_on_error=raise_on_error,
        )

    def shard_partitions(self, sample):
        return partitions.shard_partitions(sample)

    def materialize_sample(self, sample):
        self.materialize(["sample_reads"], sample)
        for partition in self.shard_partitions(sample):
            self.materialize(SHARD_ASSETS, partition)
        return self.materialize(["sample_report"], sample)


def reads_of_shard(reads: list[tuple[str, str]], index: int) -> list[tuple[str, str]]:
    """The (id, sequence) reads that sample_reads puts in shard `index`, in file order."""
    shards = shard_of_reads([sequence for _, sequence in reads], partitions.shards)
    return [read for read, shard in zip(reads, shards) if shard == index]


SHARD_ASSETS = list(jobs.SHARD_ASSETS)


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory):
    return build_demo_models(tmp_path_factory.mktemp("models"), GENOMES, 500)


@pytest.fixture
def pipeline(tmp_path, demo_models):
    return Pipeline(tmp_path, demo_models)
