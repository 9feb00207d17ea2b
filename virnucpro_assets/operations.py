"""What the CLI and the demo both do to an instance: set it up, register a sample, materialize it.
All through Dagster's public APIs; orchestration itself is Dagster's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from virnucpro_assets.errors import VirnucproError

# The instance's dagster.yaml ships inside the package (the checkout's dagster.yaml links to it).
DEFAULT_INSTANCE_CONFIG = Path(__file__).resolve().parent / "dagster.yaml"


def require_dagster_home() -> Path:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise VirnucproError(
            "DAGSTER_HOME is not set: point it at the Dagster instance directory "
            "(for example `export DAGSTER_HOME=$PWD/.virnucpro/dagster_home`)"
        )
    return Path(home)


def prepare_instance_home(home: Path) -> None:
    """Create an instance directory holding this project's dagster.yaml if it has none."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(DEFAULT_INSTANCE_CONFIG, home / "dagster.yaml")


def init_instance() -> int:
    """Size the GPU pool of the instance at DAGSTER_HOME to this machine's devices."""
    import dagster as dg

    from virnucpro_assets.pipeline.gpu import set_gpu_pool_limit

    return set_gpu_pool_limit(dg.DagsterInstance.get())


def add_sample(path: Path, name: str | None = None):
    import dagster as dg

    from virnucpro_assets.pipeline.partitions import SAMPLES
    from virnucpro_assets.pipeline.resources import registry_root
    from virnucpro_assets.samples import SampleRegistry
    from virnucpro_assets.settings import Settings

    require_dagster_home()
    sample, created = SampleRegistry(registry_root(Settings.from_environment())).register(path, name)
    instance = dg.DagsterInstance.get()
    if not instance.has_dynamic_partition(SAMPLES, sample.name):
        instance.add_dynamic_partitions(SAMPLES, [sample.name])
    return sample, created


def materialize_sample(sample: str) -> dict[str, str]:
    """Materialize the sample's partitions of every asset, stage by stage, in this process.
    Returns where each asset stored the sample (see `stored_locations`)."""
    import dagster as dg

    from virnucpro_assets.definitions import defs, partitions
    from virnucpro_assets.pipeline.partitions import SAMPLES

    require_dagster_home()
    instance = dg.DagsterInstance.get()
    release_abandoned_runs(instance)
    if not instance.has_dynamic_partition(SAMPLES, sample):
        raise VirnucproError(f"sample {sample!r} is not registered; run `virnucpro-assets add-sample PATH` first")
    assets = list(defs.assets)
    stages = [(["sample_reads"], [sample])]
    shard_assets = [a.key.to_user_string() for a in assets if _partitioned_by_shard(a)]
    stages.append((shard_assets, partitions.shard_partitions(sample)))
    sample_assets = [a.key.to_user_string() for a in assets if a.key.to_user_string() != "sample_reads" and not _partitioned_by_shard(a)]
    if sample_assets:
        stages.append((sample_assets, [sample]))
    for selection, keys in stages:
        for partition in keys:
            print(f"materializing {', '.join(selection)} [{partition}]", flush=True)
            dg.materialize(
                [*assets, *defs.asset_checks],  # checks run with their assets, as in runs from the UI
                instance=instance,
                resources=defs.resources,
                selection=selection,
                partition_key=str(partition),
                run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            )
    return stored_locations(instance, sample)


def stored_locations(instance, sample: str) -> dict[str, str]:
    """Asset name -> the directory (path or URI) holding the sample's files, as the IO managers
    recorded it in the latest materialization of the sample's first partition."""
    import dagster as dg

    from virnucpro_assets.definitions import defs, partitions

    locations = {}
    for assets_def in defs.assets:
        key = assets_def.key
        partition = str(partitions.shard_partitions(sample)[0]) if _partitioned_by_shard(assets_def) else sample
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records
        path = records[0].asset_materialization.metadata.get("path") if records else None
        if path is not None:
            locations[key.to_user_string()] = path.value if partition == sample else path.value.rsplit("/", 1)[0]
    return locations


def _partitioned_by_shard(assets_def) -> bool:
    import dagster as dg

    return isinstance(assets_def.partitions_def, dg.MultiPartitionsDefinition)


def release_abandoned_runs(instance) -> None:
    """Mark failed the runs of this host whose process is gone, and free their pool slots (what the
    daemon's sensor does, for when it is not running)."""
    import sys

    from virnucpro_assets.pipeline.coordination import release_abandoned_runs as release

    released = release(instance)
    if released:
        print(f"virnucpro-assets: runs {released}", file=sys.stderr)
