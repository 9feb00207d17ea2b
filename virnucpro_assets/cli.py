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
import sys
from pathlib import Path

from virnucpro_assets.errors import VirnucproError
from virnucpro_assets.models import precision
from virnucpro_assets.operations import add_sample, init_instance, materialize_sample, prepare_instance_home, require_dagster_home

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


def show_devices() -> None:
    from datetime import datetime

    from virnucpro_assets.gpu.inventory import discover_devices
    from virnucpro_assets.gpu.leases import device_holders
    from virnucpro_assets.pipeline.gpu import default_lease_dir

    if os.environ.get("DAGSTER_HOME"):
        import dagster as dg

        from virnucpro_assets.operations import release_abandoned_runs

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


if __name__ == "__main__":
    sys.exit(main())
