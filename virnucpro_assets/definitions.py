"""Everything Dagster loads from this code location."""

from __future__ import annotations

import dagster as dg

from virnucpro_assets.pipeline.assets import classify, embeddings, ingest
from virnucpro_assets.pipeline.gpu import GpuResource
from virnucpro_assets.pipeline.models import default_models
from virnucpro_assets.pipeline.resources import default_resources

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest, embeddings, classify]),
    resources={**default_resources(), "models": default_models(), "gpu": GpuResource()},
)
