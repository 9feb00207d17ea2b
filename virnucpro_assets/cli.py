"""`virnucpro-assets`: what Dagster's own CLI lacks. Orchestration itself is Dagster's.

  init                            set up $DAGSTER_HOME (dagster.yaml, GPU pool = devices)
  add-sample PATH [--name NAME]   register a reads file as a sample (a dynamic partition)
  materialize SAMPLE              materialize every asset of one sample, in this process
  demo                            the offline demo: bundled reads, tiny models, whole graph
  devices                         each GPU device, and which step holds it now
  compare-precision INPUT         half precision against fp32 on your own models and sequences
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from virnucpro_assets.errors import VirnucproError
from virnucpro_assets.models import precision

CHECKOUT = Path(__file__).resolve().parents[1]
DEMO_HOME = Path(".virnucpro")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="virnucpro-assets", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init", help="set up the instance at $DAGSTER_HOME for this machine")
    add = commands.add_parser("add-sample", help="register a FASTA/FASTQ file (plain or .gz) as a sample")
    add.add_argument("path", type=Path)
    add.add_argument("--name", help="sample name (default: derived from the file name)")
    run = commands.add_parser("materialize", help="materialize every asset of one sample in this process")
    run.add_argument("sample")
    demo = commands.add_parser("demo", help="run the offline demo sample end to end")
    demo.add_argument("--home", type=Path, default=DEMO_HOME, help="where the demo instance, store and models live")
    commands.add_parser("devices", help="show each GPU device and which step holds it now")
    precision.add_command(commands)
    args = parser.parse_args(argv)
    try:
        if args.command == "init":
            home = require_dagster_home()
            prepare_instance_home(home)
            print(f"instance {home}: gpu pool limit {init_instance()}")
        elif args.command == "add-sample":
            sample, created = add_sample(args.path, args.name)
            print(sample.name)
            if not created:
                print(f"(already registered: {sample.path})", file=sys.stderr)
        elif args.command == "materialize":
            materialize_sample(args.sample)
        elif args.command == "demo":
            from virnucpro_assets.demo import run_demo

            run_demo(args.home.absolute())
        elif args.command == "devices":
            show_devices()
        elif args.command == "compare-precision":
            precision.run_command(args)
    except VirnucproError as error:
        print(f"virnucpro-assets: error: {error}", file=sys.stderr)
        return 1
    return 0


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
    release_abandoned_runs(instance)
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


def show_devices() -> None:
    from datetime import datetime

    from virnucpro_assets.gpu.inventory import discover_devices
    from virnucpro_assets.gpu.leases import device_holders
    from virnucpro_assets.pipeline.gpu import default_lease_dir

    if os.environ.get("DAGSTER_HOME"):
        import dagster as dg

        release_abandoned_runs(dg.DagsterInstance.get())
    for holder in device_holders(discover_devices(), default_lease_dir()):
        if not holder.held:
            print(f"{holder.device}\tfree")
            continue
        details = holder.details
        since = datetime.fromtimestamp(details.get("since", 0)).isoformat(timespec="seconds")
        print(
            f"{holder.device}\theld by {details.get('asset')} [{details.get('partition')}] "
            f"run {details.get('run_id')} pid {details.get('pid')} since {since}"
        )


def release_abandoned_runs(instance) -> None:
    """Mark failed the runs of this host whose process is gone, and free their pool slots (what the
    daemon's sensor does, for when it is not running)."""
    from virnucpro_assets.pipeline.coordination import release_abandoned_runs as release

    released = release(instance)
    if released:
        print(f"virnucpro-assets: runs {released}", file=sys.stderr)


def _partitioned_by_shard(assets_def) -> bool:
    import dagster as dg

    return isinstance(assets_def.partitions_def, dg.MultiPartitionsDefinition)


if __name__ == "__main__":
    sys.exit(main())
