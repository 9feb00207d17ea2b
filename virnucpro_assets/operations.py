"""What the CLI and the demo both do to an instance: set it up, register a sample, materialize it.
All through Dagster's public APIs; orchestration itself is Dagster's."""

from __future__ import annotations

import os
import uuid
from contextlib import nullcontext
from pathlib import Path

from virnucpro_assets.errors import VirnucproError

# Tags each run materialize_sample starts, so that its observer can find the run.
RUN_TAG = "virnucpro/cli-run"


def require_dagster_home() -> Path:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise VirnucproError(
            "DAGSTER_HOME is not set: point it at the Dagster instance directory "
            "(for example `export DAGSTER_HOME=$PWD/.virnucpro/dagster_home`)"
        )
    return Path(home)


def prepare_instance_home(home: Path, postgres_url: str | None = None) -> None:
    """Create an instance directory holding this project's dagster.yaml if it has none; with a
    Postgres URL, one whose storage is that database (virnucpro_assets/instance/postgres.yaml)."""
    from virnucpro_assets.deployment.instance import write_instance_config

    write_instance_config(home, postgres_url)


def init_instance(gpu_slots: int | None = None) -> int:
    """Size the GPU pool of the instance at DAGSTER_HOME: to `gpu_slots` (the GPU workers of every
    host, for a shared instance), else to two steps per device of this machine (see
    virnucpro_assets.pipeline.gpu.STEPS_PER_DEVICE)."""
    import dagster as dg
    from sqlalchemy.exc import OperationalError

    from virnucpro_assets.pipeline.gpu import set_gpu_pool_limit

    try:
        instance = dg.DagsterInstance.get()
    except OperationalError as error:
        raise VirnucproError(f"the database of the instance in {require_dagster_home()} cannot be reached: {error.orig}") from None
    return set_gpu_pool_limit(instance, gpu_slots)


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


def add_training_genomes(path: Path, label: str, training_set: str, group: str | None = None, chunk_length: int | None = None):
    """Add a GenBank file to a training set and make sure the set's partition for the chunk
    length (the deployment's unless given) exists. Returns (entry, created, partition)."""
    import dagster as dg

    from virnucpro_assets.pipeline.partitions import TRAINING_SETS
    from virnucpro_assets.pipeline.resources import registry_root
    from virnucpro_assets.settings import Settings, check_chunk_length
    from virnucpro_assets.training.registry import TrainingRegistry, training_partition

    require_dagster_home()
    settings = Settings.from_environment()
    length = check_chunk_length(chunk_length or settings.chunk_length, "--chunk-length")
    entry, created = TrainingRegistry(registry_root(settings)).add(training_set, path, label, group)
    partition = training_partition(training_set, length)
    instance = dg.DagsterInstance.get()
    if not instance.has_dynamic_partition(TRAINING_SETS, partition):
        instance.add_dynamic_partitions(TRAINING_SETS, [partition])
    return entry, created, partition


class StepFailedError(VirnucproError):
    """A step of a run failed: its user-facing message, without Dagster's wrapping and traceback."""


def require_configured_models(settings=None) -> None:
    """Raise (preflight.ModelsUnavailable) unless all three models of the settings can be used."""
    from virnucpro_assets.preflight import require_models
    from virnucpro_assets.settings import Settings

    settings = settings or Settings.from_environment()
    require_models(settings.dnabert_model, settings.esm2_model, settings.classifier, settings.chunk_length)


def sample_stages(sample: str) -> list[tuple[list[str], list[str]]]:
    """(asset names, partition keys) of each stage of a sample, in the order they run."""
    from virnucpro_assets.definitions import defs, partitions

    shards = [str(p) for p in partitions.shard_partitions(sample)]
    return [(["sample_reads"], [sample]), *_stages(defs, partitions.sample_shard, shards, partitions.samples, sample, {"sample_reads"})]


def training_stages(partition: str) -> list[tuple[list[str], list[str]]]:
    """(asset names, partition keys) of each stage of a training set partition (`<set>-<length>`):
    training pairs to merged features per shard, then the classifier."""
    from virnucpro_assets.definitions import defs, partitions

    shards = [f"{partition}|{shard}" for shard in partitions.shard_keys]
    return _stages(defs, partitions.training_shard, shards, partitions.training_sets, partition)


def _stages(defs, shard_partitions, shard_keys, whole_partitions, key, done=frozenset()):
    """The assets partitioned by shard, on every shard, then those of the whole sample or set."""

    def names(partitions_def):
        return [a.key.to_user_string() for a in defs.assets if a.partitions_def == partitions_def and a.key.to_user_string() not in done]

    stages = [(names(shard_partitions), shard_keys)]
    if names(whole_partitions):
        stages.append((names(whole_partitions), [key]))
    return stages


def materialize_sample(sample: str, observer=None) -> dict[str, str]:
    """Materialize the sample's partitions of every asset, stage by stage, in this process.
    Returns where each asset stored the sample (see `stored_locations`).

    Without `observer`, Dagster's console log shows each run's events. With one (see
    virnucpro_assets.progress.RunObserver), the console log is quiet and the observer is told of
    each run's events as they are stored. A failed step raises StepFailedError with its message."""
    import dagster as dg

    from virnucpro_assets.pipeline.partitions import SAMPLES

    require_dagster_home()
    instance = dg.DagsterInstance.get()
    release_abandoned_runs(instance)
    if not instance.has_dynamic_partition(SAMPLES, sample):
        raise VirnucproError(f"sample {sample!r} is not registered; run `virnucpro-assets add-sample PATH` first")
    _materialize_stages(instance, sample_stages(sample), observer)
    return stored_locations(instance, sample)


def materialize_training_set(partition: str, observer=None) -> str:
    """Materialize a training set partition (`<set>-<chunk length>`) from its training pairs to
    its classifier, with the classifier's check, as `materialize_sample` does a sample. Returns the
    directory (path or URI) holding the classifier's files."""
    import dagster as dg

    from virnucpro_assets.pipeline.partitions import TRAINING_SETS

    require_dagster_home()
    instance = dg.DagsterInstance.get()
    release_abandoned_runs(instance)
    if not instance.has_dynamic_partition(TRAINING_SETS, partition):
        raise VirnucproError(
            f"training set partition {partition!r} is not registered; add GenBank files with `virnucpro-assets add-training-genomes` first"
        )
    _materialize_stages(instance, training_stages(partition), observer)
    latest = dg.AssetRecordsFilter(asset_key=dg.AssetKey("classifier"), asset_partitions=[partition])
    return instance.fetch_materializations(latest, limit=1).records[0].asset_materialization.metadata["path"].value


def _materialize_stages(instance, stages, observer) -> None:
    import dagster as dg

    from virnucpro_assets.definitions import defs

    log_level = "CRITICAL" if observer else "INFO"
    for selection, keys in stages:
        for partition in keys:
            if observer is None:
                print(f"materializing {', '.join(selection)} [{partition}]", flush=True)
            tags = {RUN_TAG: uuid.uuid4().hex}
            with observer.watching(instance, tags) if observer else nullcontext():
                try:
                    dg.materialize(
                        [*defs.assets, *defs.asset_checks],  # checks run with their assets, as in runs from the UI
                        instance=instance,
                        resources=defs.resources,
                        selection=selection,
                        partition_key=partition,
                        tags=tags,
                        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
                    )
                except dg.DagsterUserCodeExecutionError as error:
                    raise StepFailedError(_step_failure_message(error, partition)) from None
                except dg.Failure as failure:  # raised as it is, not wrapped
                    raise StepFailedError(f"{', '.join(selection)} [{partition}]: {failure.description}") from None


def _step_failure_message(error, partition: str) -> str:
    """The user's exception's message, prefixed with the step and partition it failed in."""
    import dagster as dg

    cause = error.user_exception if error.user_exception is not None else error
    where = f"{getattr(error, 'op_name', None) or 'run start'} [{partition}]"
    if isinstance(cause, dg.Failure):
        return f"{where}: {cause.description}"
    if isinstance(cause, VirnucproError):
        return f"{where}: {cause}"
    return f"{where}: {type(cause).__name__}: {cause} (the run's log in the Dagster UI has the traceback)"


def sample_files(name: str) -> list[str]:
    """The store's directories holding files of sample `name` (of any asset)."""
    from virnucpro_assets.settings import Settings
    from virnucpro_assets.storage import Store

    require_dagster_home()
    store = Store(Settings.from_environment().store)
    return [str(store.sample_dir(asset, name)) for asset in store.sample_assets(name)]


def remove_sample(name: str) -> list[str]:
    """Delete sample `name`: every asset's files of it in the store, its registry entry and its
    dynamic partition (so the UI no longer counts it; its past runs and events stay in the
    instance's history). Returns the directories removed."""
    import dagster as dg

    from virnucpro_assets.pipeline.partitions import SAMPLES
    from virnucpro_assets.pipeline.resources import registry_root
    from virnucpro_assets.samples import SampleRegistry
    from virnucpro_assets.settings import Settings
    from virnucpro_assets.storage import Store, check_name

    check_name("sample", name)
    require_dagster_home()
    settings = Settings.from_environment()
    instance = dg.DagsterInstance.get()
    store = Store(settings.store)
    registry = SampleRegistry(registry_root(settings))
    partitioned = instance.has_dynamic_partition(SAMPLES, name)
    assets = store.sample_assets(name)
    if not partitioned and not assets and not registry.has_entry(name):
        raise VirnucproError(f"there is no sample {name!r}: no partition, no registry entry and no files in {store.root}")
    in_flight = runs_in_flight(instance, name)
    if in_flight:
        listed = ", ".join(f"{run.run_id} ({run.status.value.lower()}, {run.tags['dagster/partition']})" for run in in_flight[:5])
        more = f" and {len(in_flight) - 5} more" if len(in_flight) > 5 else ""
        raise VirnucproError(
            f"not removing sample {name!r}: {len(in_flight)} run{'s' if len(in_flight) > 1 else ''} of it "
            f"{'are' if len(in_flight) > 1 else 'is'} queued or running ({listed}{more}); wait for "
            f"{'them' if len(in_flight) > 1 else 'it'} to end, or terminate {'them' if len(in_flight) > 1 else 'it'} "
            "in the Dagster UI (Runs), then remove the sample"
        )
    removed = [str(directory) for directory in (store.remove_sample(asset, name) for asset in assets) if directory is not None]
    registry.remove(name)
    if partitioned:
        instance.delete_dynamic_partition(SAMPLES, name)
    return removed


def runs_in_flight(instance, sample: str) -> list:
    """The queued, starting or running runs of any partition of `sample` (its own, or one of its shards)."""
    import dagster as dg

    from virnucpro_assets.pipeline.partitions import sample_and_shard

    statuses = [dg.DagsterRunStatus[s] for s in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")]
    runs = instance.get_runs(dg.RunsFilter(statuses=statuses))
    partitions = [(run, run.tags.get("dagster/partition", "")) for run in runs]
    return [run for run, key in partitions if sample in (key, sample_and_shard(key)[0])]


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
