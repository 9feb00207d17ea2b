"""Everything Dagster loads from this code location."""

from __future__ import annotations

import dagster as dg

from virnucpro_assets.pipeline.assets import ingest
from virnucpro_assets.pipeline.resources import default_resources

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest]),
    resources=default_resources(),
)
