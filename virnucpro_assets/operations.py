"""What the CLI and the demo both do to an instance: set it up, register a sample, materialize it.
All through Dagster's public APIs; orchestration itself is Dagster's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from virnucpro_assets.errors import VirnucproError

CHECKOUT = Path(__file__).resolve().parents[1]


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
        shutil.copyfile(CHECKOUT / "dagster.yaml", home / "dagster.yaml")


def init_instance() -> int:
    """Size the GPU pool of the instance at DAGSTER_HOME to this machine's devices."""
    import dagster as dg

    from virnucpro_assets.pipeline.gpu import set_gpu_pool_limit

    return set_gpu_pool_limit(dg.DagsterInstance.get())


def add_sample(path: Path, name: str | None = None):
    import dagster as dg

    from virnucpro_assets import settings
    from virnucpro_assets.pipeline.partitions import SAMPLES
    from virnucpro_assets.samples import SampleRegistry

    require_dagster_home()
    sample, created = SampleRegistry(settings.store_root()).register(path, name)
    instance = dg.DagsterInstance.get()
    if not instance.has_dynamic_partition(SAMPLES, sample.name):
        instance.add_dynamic_partitions(SAMPLES, [sample.name])
    return sample, created


def materialize_sample(sample: str) -> None:
    """Materialize the sample's partitions of every asset, stage by stage, in this process."""
    import dagster as dg

    from virnucpro_assets.definitions import defs
    from virnucpro_assets.pipeline.partitions import SAMPLES, shard_keys

    require_dagster_home()
    instance = dg.DagsterInstance.get()
    if not instance.has_dynamic_partition(SAMPLES, sample):
        raise VirnucproError(f"sample {sample!r} is not registered; run `virnucpro-assets add-sample PATH` first")
    assets = list(defs.assets)
    stages = [(["sample_reads"], [sample])]
    shard_assets = [a.key.to_user_string() for a in assets if _partitioned_by_shard(a)]
    stages.append((shard_assets, [dg.MultiPartitionKey({"sample": sample, "shard": s}) for s in shard_keys]))
    sample_assets = [a.key.to_user_string() for a in assets if a.key.to_user_string() != "sample_reads" and not _partitioned_by_shard(a)]
    if sample_assets:
        stages.append((sample_assets, [sample]))
    for selection, partitions in stages:
        for partition in partitions:
            print(f"materializing {', '.join(selection)} [{partition}]", flush=True)
            dg.materialize(
                [*assets, *defs.asset_checks],  # checks run with their assets, as in runs from the UI
                instance=instance,
                resources=defs.resources,
                selection=selection,
                partition_key=str(partition),
                run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            )


def _partitioned_by_shard(assets_def) -> bool:
    import dagster as dg

    return isinstance(assets_def.partitions_def, dg.MultiPartitionsDefinition)
