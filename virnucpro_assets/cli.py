"""`virnucpro-assets`: what Dagster's own CLI lacks. Orchestration itself is Dagster's.

run READS... [--out DIR]        from reads to results in one command (models checked first)
fetch-models [--dir DIR]        download the official models, or say which file goes where
init [--postgres URL]           set up $DAGSTER_HOME (dagster.yaml, GPU pool = 2 per device)
worker --gpus all|0,1 [--cpu N] this host's Celery workers: one per GPU, and N CPU slots
add-sample PATH [--name NAME]   register a reads file as a sample (a dynamic partition)
materialize SAMPLE              materialize every asset of one sample, in this process
remove-sample NAME [--yes]      delete a sample's files, registry entry and partition
add-training-genomes FILE.gbff[.gz] --label viral|other [--set NAME]
                                add GenBank genomes to a training set (a dynamic partition per chunk length)
demo                            the offline demo: bundled reads, tiny models, whole graph
demo --train                    the offline training demo: train a classifier, predict held-back reads
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
from virnucpro_assets.operations import (
    add_sample,
    add_training_genomes,
    init_instance,
    materialize_sample,
    prepare_instance_home,
    remove_sample,
    require_configured_models,
    require_dagster_home,
    sample_files,
    sample_stages,
)

DEMO_HOME = Path(".virnucpro")
DEFAULT_OUT = Path("virnucpro-results")
# The result files a user reads, in the sample_report directory.
RESULT_FILES = ("prediction_results.txt", "prediction_results_highestscore.csv", "per_read.tsv", "report.html")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="virnucpro-assets", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run", help="from reads to results in one command: check the models, register, materialize")
    one.add_argument("reads", type=Path, nargs="+", help="FASTA/FASTQ files (plain or compressed); each is a sample")
    one.add_argument(
        "--out",
        type=Path,
        help=f"where the instance and the store go unless DAGSTER_HOME / VIRNUCPRO_STORE say otherwise (default ./{DEFAULT_OUT})",
    )
    from virnucpro_assets import fetch_models

    fetch_models.add_command(commands)
    init = commands.add_parser("init", help="set up the instance at $DAGSTER_HOME for this machine")
    init.add_argument("--postgres", metavar="URL", help="a shared instance in this PostgreSQL database (postgresql://user:pw@host/db)")
    init.add_argument("--gpu-slots", type=int, help="GPU steps admitted at once across the deployment (default: 2 per device here)")
    worker = commands.add_parser("worker", help="start this host's Celery workers (VIRNUCPRO_EXECUTOR=celery)")
    worker.add_argument("--gpus", default="all", help="all (default), none, or this host's device numbers, e.g. 0,1: one worker each")
    worker.add_argument("--cpu", type=int, default=0, help="also a worker for CPU steps, taking N at once (e.g. the cores)")
    add = commands.add_parser("add-sample", help="register a FASTA/FASTQ file (plain or .gz) as a sample")
    add.add_argument("path", type=Path)
    add.add_argument("--name", help="sample name (default: derived from the file name)")
    materialize = commands.add_parser("materialize", help="materialize every asset of one sample in this process")
    materialize.add_argument("sample")
    remove = commands.add_parser("remove-sample", help="delete a sample's files from the store, its registry entry and its partition")
    remove.add_argument("name")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    genomes = commands.add_parser("add-training-genomes", help="add a GenBank file (plain or .gz) to a training set")
    genomes.add_argument("path", type=Path)
    genomes.add_argument("--label", required=True, choices=["viral", "other"])
    genomes.add_argument("--set", dest="training_set", default="default", help="training set name (default: default)")
    genomes.add_argument("--group", help="group sampled evenly within the other class, like the original's kingdoms (default: the label)")
    genomes.add_argument("--chunk-length", type=int, help="300 or 500 (default: VIRNUCPRO_CHUNK_LENGTH)")
    demo = commands.add_parser("demo", help="run the offline demo sample end to end")
    demo.add_argument("--home", type=Path, default=DEMO_HOME, help="where the demo instance, store and models live")
    demo.add_argument(
        "--train", action="store_true", help="instead: train a classifier on bundled genomes, then predict reads of other genomes with it"
    )
    commands.add_parser("devices", help="show each GPU device and which step holds it now")
    precision.add_command(commands)
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return run_reads(args.reads, args.out)
        if args.command == "fetch-models":
            return fetch_models.run_command(args)
        if args.command == "init":
            home = require_dagster_home()
            prepare_instance_home(home, args.postgres)
            storage = "PostgreSQL" if args.postgres else "sqlite"
            print(f"instance {home} ({storage}): gpu pool limit {init_instance(args.gpu_slots)}")
        elif args.command == "worker":
            return start_workers(args.gpus, args.cpu)
        elif args.command == "add-sample":
            sample, created = add_sample(args.path, args.name)
            print(sample.name)
            if not created:
                print(f"(already registered: {sample.path})", file=sys.stderr)
        elif args.command == "add-training-genomes":
            entry, created, partition = add_training_genomes(args.path, args.label, args.training_set, args.group, args.chunk_length)
            print(f"{entry.name}: {entry.records} records, {entry.label} ({entry.group}) in training set partition {partition}")
            if not created:
                print(f"(already in the set: {entry.path})", file=sys.stderr)
        elif args.command == "materialize":
            require_dagster_home()
            require_configured_models()
            materialize_sample(args.sample)
        elif args.command == "remove-sample":
            return remove_sample_command(args.name, args.yes)
        elif args.command == "demo" and args.train:
            from virnucpro_assets.demo.training import run_training_demo

            run_training_demo(args.home.absolute())
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


def run_reads(reads: list[Path], out: Path | None) -> int:
    """`virnucpro-assets run`: check everything that can be checked cheaply (the files, the
    settings, the three models) before anything is written, then register and materialize each
    file as a sample on the instance (DAGSTER_HOME, else <out>/dagster_home) and say where the
    results are."""
    import os

    from virnucpro_assets.progress import RunProgress
    from virnucpro_assets.settings import Settings

    for path in reads:
        if not path.is_file():
            raise VirnucproError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"])
        if out is not None:
            print(f"using the instance at DAGSTER_HOME={home} and its store, not {out}", file=sys.stderr)
    else:
        out = (out or DEFAULT_OUT).absolute()
        home = out / "dagster_home"
        os.environ["DAGSTER_HOME"] = str(home)
        os.environ.setdefault("VIRNUCPRO_STORE", str(out / "store"))
    require_configured_models(Settings.from_environment())

    prepare_instance_home(home)
    init_instance()
    for path in reads:
        sample, _ = add_sample(path)
        progress = RunProgress(sample.name, sample_stages(sample.name))
        try:
            locations = materialize_sample(sample.name, observer=progress)
        finally:
            progress.close()
        report = locations["sample_report"]
        print(f"{sample.name} ({path}): results in {report}")
        for name in RESULT_FILES:
            print(f"  {report}/{name}")
    print(f"instance: {home} (`DAGSTER_HOME={home} dagster dev -w workspace.yaml` shows every step in the web UI)")
    return 0


def start_workers(gpus: str, cpu: int) -> int:
    from virnucpro_assets.deployment.workers import plan_workers, run_workers, select_devices, write_worker_config
    from virnucpro_assets.settings import Settings

    workers = plan_workers(select_devices(gpus), cpu)
    return run_workers(workers, write_worker_config(require_dagster_home(), Settings.from_environment()))


def remove_sample_command(name: str, yes: bool) -> int:
    files = sample_files(name)
    if not yes:
        if not sys.stdin.isatty():
            raise VirnucproError(f"not removing sample {name!r} without confirmation: stdin is not a terminal; pass --yes")
        print(f"sample {name!r}: {len(files)} stored director{'y' if len(files) == 1 else 'ies'}")
        for location in files:
            print(f"  {location}")
        answer = input("delete them, its registry entry and its partition? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 1
    removed = remove_sample(name)
    directories = f"{len(removed)} stored director{'y' if len(removed) == 1 else 'ies'}"
    print(f"removed sample {name!r}: {directories}, its registry entry and its partition")
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
