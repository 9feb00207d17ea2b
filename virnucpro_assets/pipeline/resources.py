"""Resources the assets share, and the set of them a deployment's settings imply."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from virnucpro_assets import settings as settings_module
from virnucpro_assets.errors import ConfigurationError
from virnucpro_assets.pipeline.gpu import GpuResource
from virnucpro_assets.pipeline.io_managers import ReportIOManager, TableIOManager, TensorIOManager
from virnucpro_assets.pipeline.models import ModelsResource
from virnucpro_assets.pipeline.partitions import sample_and_shard
from virnucpro_assets.samples import SampleRegistry
from virnucpro_assets.settings import Settings
from virnucpro_assets.storage import Store, is_url
from virnucpro_assets.storage.embedding_cache import CACHE_DIRECTORY, EmbeddingCache


class StoreResource(dg.ConfigurableResource):
    """The store's root (for the sample registry, for withdrawing files that failed a check and for
    the embedding cache; reading and writing asset values is the IO managers' work)."""

    root: str
    # Where the sample registry lives: the store itself when it is a file system, else this directory.
    registry_root: str = ""
    # Vectors reused across samples (virnucpro_assets.storage.embedding_cache), within a size bound:
    # off, on (both models), esm2 or dnabert.
    embedding_cache: str = "off"
    embedding_cache_max_gb: float = settings_module.DEFAULT_EMBEDDING_CACHE_MAX_GB

    @property
    def store(self) -> Store:
        return Store(self.root)

    @property
    def registry(self) -> SampleRegistry:
        return SampleRegistry(Path(self.registry_root or self.root))

    def embedding_cache_of(self, model: str, embedder, precision: str) -> EmbeddingCache | None:
        """The embedding cache's entries of `model` ("dnabert" or "esm2", loaded as `embedder`) in
        one precision, or None when the cache is off for it (then the embedder's `embedding_key`,
        which may wait for its weights' hash, is not asked for)."""
        choice = settings_module.check_embedding_cache(self.embedding_cache, "store.embedding_cache")
        if model not in settings_module.EMBEDDING_CACHE_CHOICES[choice]:
            return None
        if not self.store.local:
            raise ConfigurationError(f"store.embedding_cache needs a file-system store, not {self.root}; turn it off")
        max_gb = settings_module.check_embedding_cache_max_gb(self.embedding_cache_max_gb, "store.embedding_cache_max_gb")
        return EmbeddingCache(Path(self.store.root) / CACHE_DIRECTORY, embedder.embedding_key, precision, embedder.dim, int(max_gb * 1e9))

    def withdraw(self, asset: str, partition_key: str, extension: str) -> None:
        """Move a shard file that failed a blocking check out of readers' sight."""
        sample, shard = sample_and_shard(partition_key)
        path = self.store.shard_path(asset, sample, shard, extension)
        self.store.withdraw(path.parent, path.name)


class TranslationSettings(dg.ConfigurableResource):
    """The chunk length of the whole pipeline: 300 or 500, matching the classifier."""

    chunk_length: int = settings_module.DEFAULT_CHUNK_LENGTH

    def checked_chunk_length(self) -> int:
        return settings_module.check_chunk_length(self.chunk_length, "translation.chunk_length")


class ReportSettings(dg.ConfigurableResource):
    """How a sample's report decides per read: `virus` when the read's highest virus score (score2
    over all its frames) is at least `virus_threshold` (0.5, the classifier's own boundary, unless
    set; see virnucpro_assets.results.report)."""

    virus_threshold: float = settings_module.DEFAULT_VIRUS_THRESHOLD

    def checked_virus_threshold(self) -> float:
        return settings_module.check_virus_threshold(self.virus_threshold, "report.virus_threshold")


def store_resources(
    root: str, registry_root: str = "", settings: Settings | None = None
) -> dict[str, dg.ConfigurableResource | dg.ConfigurableIOManagerFactory]:
    """The store resource (with the embedding cache of `settings`, off without) and the three IO
    managers over one store root."""
    cache = {"embedding_cache": settings.embedding_cache, "embedding_cache_max_gb": settings.embedding_cache_max_gb} if settings else {}
    return {
        "store": StoreResource(root=root, registry_root=registry_root, **cache),
        "table_io_manager": TableIOManager(root=root),
        "tensor_io_manager": TensorIOManager(root=root),
        "report_io_manager": ReportIOManager(root=root),
    }


def registry_root(settings: Settings) -> Path:
    """Where the sample registry lives: in the store when it is a file system, else on this host."""
    return settings_module.instance_directory() / "registry" if is_url(settings.store) else Path(settings.store)


def deployment_resources(settings: Settings) -> dict:
    """Every resource, configured from the settings read once when the definitions load. A value
    set by an environment variable stays a `dg.EnvVar`, so the UI shows where it came from."""
    return {
        **store_resources(_env_or("VIRNUCPRO_STORE", settings.store), str(registry_root(settings)), settings),
        "translation": TranslationSettings(chunk_length=settings.chunk_length),
        "report": ReportSettings(virus_threshold=settings.virus_threshold),
        "models": ModelsResource(
            dnabert=_env_or("VIRNUCPRO_DNABERT_MODEL", settings.dnabert_model),
            esm2=_env_or("VIRNUCPRO_ESM2_MODEL", settings.esm2_model),
            classifier=_env_or("VIRNUCPRO_CLASSIFIER", settings.classifier),
            precision=_env_or("VIRNUCPRO_PRECISION", settings.precision),
            compile=_env_or("VIRNUCPRO_COMPILE", settings.compile),
        ),
        "gpu": GpuResource(),
    }


def _env_or(variable: str, value: str) -> str | dg.EnvVar:
    return dg.EnvVar(variable) if os.environ.get(variable) == value else value
