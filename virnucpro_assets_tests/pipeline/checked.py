"""The Pipeline test helper with the asset checks included, as in runs from the UI and automation."""

import dagster as dg

from virnucpro_assets.definitions import defs
from virnucpro_assets_tests.pipeline.conftest import Pipeline


class CheckedPipeline(Pipeline):
    def materialize(self, selection, partition, raise_on_error=True):
        return dg.materialize(
            [*defs.assets, *defs.asset_checks],
            instance=self.instance,
            resources=self.resources,
            selection=selection,
            partition_key=str(partition),
            raise_on_error=raise_on_error,
        )
