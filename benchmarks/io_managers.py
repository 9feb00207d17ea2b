"""merged_features and predictions of one shard through the IO managers, against the direct reads
and writes the assets did before the IO managers (same data, same store, in the same run).

    python -m benchmarks.io_managers [--reads 125000] [--pairs-per-read 1.39] [--repeats 2] [--workdir DIR]

The shard holds `reads` x `pairs-per-read` pairs (1.39 stop-free frames per 150-bp read cut from
real genomes, as measured for the README's pipeline figures) with random DNABERT-S (768) and ESM-2
(2560) vectors and a random classifier of the real width (3328). Each step runs in a fresh process
that has imported the code location, once per variant and repeat, alternating:

- `direct`: what the assets did before: read translated_proteins' ids, memory-map both embedding
  tables, merge, publish the Arrow file; read the pairs, memory-map merged_features, score, publish
  the Parquet file.
- `io_managers`: `dagster.materialize` of the asset on a sqlite instance, its inputs loaded and its
  output stored by the IO managers (digests checked and recorded, standard metadata).

Per step and variant, one JSON line: median wall seconds of the step (`step_s`: the step's own
STEP_START to STEP_SUCCESS for io_managers, the same work timed in-process for direct) and median
peak RSS of the process. Then one line of ratios io_managers / direct, and one with the cost of the
digests: the seconds to hash every file the two steps read and write, as a share of their time,
with the windowed digest the store records (its windows hashed on every core) and, as the baseline
in the same run, the single-pass digest recorded before.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import emit
from virnucpro_assets.storage.checksums import ALGORITHM, SINGLE_PASS

SHARD = "000"
SAMPLE = "bench"

STEP_SCRIPT = """
import json, resource, sys, time
sys.path.insert(0, {checkout!r})
from benchmarks.io_managers import run_step
seconds = run_step({workdir!r}, {variant!r}, {asset!r})
print(json.dumps({{"step_s": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def environment(workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(workdir / "home"),
        "VIRNUCPRO_STORE": str(workdir / "store"),
        "VIRNUCPRO_SHARDS": "1",
        "VIRNUCPRO_CLASSIFIER": str(workdir / "classifier.safetensors"),
    }


def prepare(workdir: Path, reads: int, pairs_per_read: float) -> int:
    """The shard's upstream in the store, recorded as materializations with their digests, as the
    IO managers would have left them."""
    import dagster as dg
    import numpy as np
    import pyarrow as pa

    from virnucpro_assets.demo.models import write_demo_classifier
    from virnucpro_assets.storage import EmbeddingTable, Store, write_embeddings, write_table

    (workdir / "home").mkdir(parents=True, exist_ok=True)
    (workdir / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    write_demo_classifier(workdir / "classifier.safetensors", 500, seed=1)
    pairs = int(reads * pairs_per_read)
    read_of_pair = np.sort(np.random.default_rng(0).integers(0, reads, pairs))
    read_ids = [f"read{r}" for r in read_of_pair]
    pair_ids = [f"{read}_chunk_1F{i % 3 + 1}" for i, read in enumerate(read_ids)]
    proteins = pa.table(
        {
            "pair_id": pa.array(pair_ids, pa.large_string()),
            "read_id": pa.array(read_ids, pa.large_string()),
            "chunk_id": pa.array([p[:-2] for p in pair_ids], pa.large_string()),
        }
    )
    store = Store(workdir / "store")
    rng = np.random.default_rng(1)
    uploads = {
        "translated_proteins": ("parquet", lambda local: write_table(proteins, local)),
        "dnabert_embeddings": (
            "arrow",
            lambda local: write_embeddings(local, EmbeddingTable(proteins["pair_id"], rng.standard_normal((pairs, 768), np.float32))),
        ),
        "esm2_embeddings": (
            "arrow",
            lambda local: write_embeddings(local, EmbeddingTable(proteins["pair_id"], rng.standard_normal((pairs, 2560), np.float32))),
        ),
    }
    instance = dg.DagsterInstance.local_temp(str(workdir / "home"))
    for asset, (extension, write) in uploads.items():
        path = store.shard_path(asset, SAMPLE, SHARD, extension)
        digest = store.publish_file(path, write)
        instance.add_dynamic_partitions("samples", [SAMPLE])
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset, partition=f"{SAMPLE}|{SHARD}", metadata={"checksums": {path.name: digest}})
        )
    return pairs


def run_step(workdir: str, variant: str, asset: str) -> float:
    """One step of one variant, in this process; returns its wall seconds."""
    import dagster as dg

    from virnucpro_assets.definitions import defs

    if variant == "io_managers":
        instance = dg.DagsterInstance.get()
        result = dg.materialize(
            defs.assets, selection=[asset], partition_key=f"{SAMPLE}|{SHARD}", resources=defs.resources, instance=instance
        )
        steps = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
        times = {entry.dagster_event_type: entry.timestamp for entry in instance.all_logs(result.run_id, of_type=steps)}
        return times[dg.DagsterEventType.STEP_SUCCESS] - times[dg.DagsterEventType.STEP_START]
    return _direct(Path(workdir), asset)


def _direct(workdir: Path, asset: str) -> float:
    """The step as the assets wrote it before the IO managers."""
    import pyarrow as pa

    from virnucpro_assets.models.classifier import load_classifier
    from virnucpro_assets.results.features import merge_features
    from virnucpro_assets.storage import EmbeddingTable, Store, load_embeddings, read_table, write_embeddings, write_table

    store = Store(workdir / "store")
    started = time.perf_counter()
    if asset == "merged_features":
        pair_ids = (
            read_table(store.shard_path("translated_proteins", SAMPLE, SHARD, "parquet"), ["pair_id"]).column("pair_id").combine_chunks()
        )
        features = merge_features(
            pair_ids,
            load_embeddings(store.shard_path("dnabert_embeddings", SAMPLE, SHARD, "arrow")),
            load_embeddings(store.shard_path("esm2_embeddings", SAMPLE, SHARD, "arrow")),
        )
        path = store.shard_path("merged_features", SAMPLE, SHARD, "arrow")
        store.publish_file(path, lambda local: write_embeddings(local, EmbeddingTable(pair_ids, features)))
    else:
        classifier = load_classifier(workdir / "classifier.safetensors", 500)
        pairs = read_table(store.shard_path("translated_proteins", SAMPLE, SHARD, "parquet"), ["pair_id", "read_id", "chunk_id"])
        ids, features = load_embeddings(store.shard_path("merged_features", SAMPLE, SHARD, "arrow"))
        if ids.to_pylist() != pairs.column("pair_id").to_pylist():
            raise RuntimeError("merged_features do not match translated_proteins")
        scores, decisions = classifier.score(features)
        table = (
            pairs.append_column("prediction", pa.array(decisions, pa.string()))
            .append_column("score1", pa.array(scores[:, 0]))
            .append_column("score2", pa.array(scores[:, 1]))
        )
        store.publish_file(store.shard_path("predictions", SAMPLE, SHARD, "parquet"), lambda local: write_table(table, local))
    return time.perf_counter() - started


def in_fresh_process(workdir: Path, variant: str, asset: str) -> dict:
    script = STEP_SCRIPT.format(checkout=str(Path(__file__).resolve().parents[1]), workdir=str(workdir), variant=variant, asset=asset)
    done = subprocess.run([sys.executable, "-c", script], env=environment(workdir), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} {asset} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def digest_seconds(workdir: Path, algorithm: str) -> float:
    """Hashing every file the two steps read and write, once each as the IO managers do."""
    from virnucpro_assets.storage import Store
    from virnucpro_assets.storage.checksums import digest_file

    store = Store(workdir / "store")
    files = [
        store.shard_path("translated_proteins", SAMPLE, SHARD, "parquet"),  # read by both steps
        store.shard_path("translated_proteins", SAMPLE, SHARD, "parquet"),
        store.shard_path("dnabert_embeddings", SAMPLE, SHARD, "arrow"),
        store.shard_path("esm2_embeddings", SAMPLE, SHARD, "arrow"),
        store.shard_path("merged_features", SAMPLE, SHARD, "arrow"),  # written, then read
        store.shard_path("merged_features", SAMPLE, SHARD, "arrow"),
        store.shard_path("predictions", SAMPLE, SHARD, "parquet"),
    ]
    started = time.perf_counter()
    for path in files:
        digest_file(Path(path), algorithm)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=125_000)
    parser.add_argument("--pairs-per-read", type=float, default=1.39)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as directory:
        workdir = Path(directory)
        pairs = prepare(workdir, args.reads, args.pairs_per_read)
        runs: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.repeats):
            for variant in ("direct", "io_managers"):
                for asset in ("merged_features", "predictions"):
                    runs.setdefault((asset, variant), []).append(in_fresh_process(workdir, variant, asset))
        hashing = {algorithm: digest_seconds(workdir, algorithm) for algorithm in (SINGLE_PASS, ALGORITHM)}
    medians = {}
    for (asset, variant), measured in runs.items():
        medians[asset, variant] = {key: statistics.median(m[key] for m in measured) for key in ("step_s", "peak_rss_mib")}
        emit(
            benchmark="io_managers",
            asset=asset,
            variant=variant,
            reads=args.reads,
            pairs=pairs,
            repeats=args.repeats,
            step_s=round(medians[asset, variant]["step_s"], 3),
            peak_rss_mib=round(medians[asset, variant]["peak_rss_mib"], 1),
        )
    for asset in ("merged_features", "predictions"):
        io, direct = medians[asset, "io_managers"], medians[asset, "direct"]
        emit(
            benchmark="io_managers",
            asset=asset,
            ratio="io_managers/direct",
            step_s=round(io["step_s"] / direct["step_s"], 3),
            peak_rss_mib=round(io["peak_rss_mib"] / direct["peak_rss_mib"], 3),
        )
    steps = sum(medians[asset, "io_managers"]["step_s"] for asset in ("merged_features", "predictions"))
    for algorithm, seconds in hashing.items():
        emit(
            benchmark="io_managers",
            measure="digests",
            algorithm=algorithm,
            threads=1 if algorithm == SINGLE_PASS else len(os.sched_getaffinity(0)),
            digest_s=round(seconds, 3),
            share_of_both_steps=round(seconds / steps, 4),
        )


if __name__ == "__main__":
    main()
