"""Configuration the assets share, with defaults from the environment (see virnucpro_assets.settings)."""

from __future__ import annotations

import dagster as dg

from virnucpro_assets import settings
from virnucpro_assets.pipeline.coordination import record_run_process
from virnucpro_assets.samples import SampleRegistry
from virnucpro_assets.storage import Store


class StoreResource(dg.ConfigurableResource):
    """Where every asset's files live (hive-style, see virnucpro_assets.storage)."""

    root: str

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every asset uses the store, so every run records its process here (see coordination.py).
        if context.run is not None and context.instance is not None:
            record_run_process(context.instance, context.run.run_id)

    @property
    def store(self) -> Store:
        return Store(self.root)

    @property
    def registry(self) -> SampleRegistry:
        return SampleRegistry(self.store.root)


class TranslationSettings(dg.ConfigurableResource):
    """The chunk length of the whole pipeline: 300 or 500, matching the classifier."""

    chunk_length: int = settings.DEFAULT_CHUNK_LENGTH

    def checked_chunk_length(self) -> int:
        return settings.check_chunk_length(self.chunk_length, "translation.chunk_length")


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "store": StoreResource(root=str(settings.store_root())),
        "translation": TranslationSettings(chunk_length=settings.chunk_length()),
    }
