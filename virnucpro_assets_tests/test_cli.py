import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from virnucpro_assets.demo import GENOMES as GENOMES_BUNDLED
from virnucpro_assets.demo.reads import cut_reads, load_genomes, write_fastq

BIN = Path(sys.executable).parent


def run(args, home, **kwargs):
    env = {**os.environ, "DAGSTER_HOME": str(home / "dagster_home"), "VIRNUCPRO_STORE": str(home / "store"), "VIRNUCPRO_SHARDS": "2"}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1], **kwargs)


@pytest.mark.long(15)
def test_add_sample_then_dagster_asset_materialize(tmp_path, genome_reads):
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    reads = tmp_path / "My Reads.fq.gz"
    write_fastq(genome_reads[:20], reads)

    added = run([BIN / "virnucpro-assets", "add-sample", str(reads)], tmp_path)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "My_Reads"
    again = run([BIN / "virnucpro-assets", "add-sample", str(reads)], tmp_path)
    assert again.stdout.strip() == "My_Reads" and "already registered" in again.stderr

    for select, partition in (("sample_reads", "My_Reads"), ("translated_proteins", "My_Reads|001")):
        materialize = [BIN / "dagster", "asset", "materialize", "-m", "virnucpro_assets", "--select", select, "--partition", partition]
        done = run(materialize, tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "store/translated_proteins/sample=My_Reads/shard=001.parquet").exists()
    assert not (tmp_path / "store/translated_proteins/sample=My_Reads/shard=000.parquet").exists()


def test_add_sample_errors_are_one_clear_line(tmp_path):
    (tmp_path / "dagster_home").mkdir()
    failed = run([BIN / "virnucpro-assets", "add-sample", str(tmp_path / "absent.fa")], tmp_path)
    assert failed.returncode == 1
    assert failed.stderr.strip() == f"virnucpro-assets: error: {tmp_path / 'absent.fa'}: no such file"
    reads = tmp_path / "r.fa"
    reads.write_text(">a\nACGT\n")
    refused = run([BIN / "virnucpro-assets", "add-sample", str(reads), "--name", "../escape"], tmp_path)
    assert refused.returncode == 1 and "not allowed" in refused.stderr and "Traceback" not in refused.stderr


# --- `run`: from reads to results in one command ----------------------------------------------

ROOT = Path(__file__).parents[1]
SHARED_GENOMES = ROOT.parent / "shared" / "data" / "genomes"


@pytest.fixture(scope="module")
def demo_model_settings(tmp_path_factory):
    from virnucpro_assets.demo import GENOMES
    from virnucpro_assets.demo.models import build_demo_models

    models = build_demo_models(tmp_path_factory.mktemp("models"), GENOMES, 500)
    return {
        "VIRNUCPRO_DNABERT_MODEL": str(models.dnabert),
        "VIRNUCPRO_ESM2_MODEL": str(models.esm2),
        "VIRNUCPRO_CLASSIFIER": str(models.classifier),
    }


@pytest.fixture(scope="module")
def shared_reads(tmp_path_factory):
    genomes = sorted(SHARED_GENOMES.rglob("*.fna.gz")) or GENOMES_BUNDLED
    path = tmp_path_factory.mktemp("reads") / "lib7.fastq.gz"
    reads = cut_reads(load_genomes(genomes), count=30, lengths=(150, 300, 700), seed=5)
    write_fastq(reads, path)
    return path, reads


def run_command(args, tmp_path, extra_env, stdin=None):
    """The CLI as a user runs it: no DAGSTER_HOME, no VIRNUCPRO_STORE, in a directory of their own."""
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "VIRNUCPRO_STORE")}
    env.update({"VIRNUCPRO_SHARDS": "2", "PYTHONPATH": str(ROOT), **extra_env})
    return subprocess.run(
        [BIN / "virnucpro-assets", *args], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path, stdin=stdin
    )


def test_run_with_one_model_wrong_stops_at_once_naming_it(tmp_path, demo_model_settings, shared_reads):
    shared_reads, _ = shared_reads
    settings = {**demo_model_settings, "VIRNUCPRO_ESM2_MODEL": str(tmp_path / "esm2_t36_3B_UR50D.pt")}
    started = time.monotonic()
    done = run_command(["run", str(shared_reads), "--out", "results"], tmp_path, settings)
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert elapsed < 15, elapsed
    assert done.stderr.splitlines() == [
        "virnucpro-assets: error: 1 of the models is not usable, so nothing was run:",
        f"  - ESM-2 (VIRNUCPRO_ESM2_MODEL={tmp_path / 'esm2_t36_3B_UR50D.pt'}): {tmp_path / 'esm2_t36_3B_UR50D.pt'} does not exist: "
        "give a fair-esm checkpoint (.pt) or a model name such as esm2_t36_3B_UR50D (`virnucpro-assets fetch-models` downloads it)",
    ]
    assert not (tmp_path / "results").exists()  # no instance, no store, nothing


@pytest.mark.long(10)
def test_run_from_reads_to_the_original_result_files(tmp_path, demo_model_settings, shared_reads):
    from benchmarks.original import process_reads

    shared_reads, reads = shared_reads
    pair_ids = [pair[0] for pair in process_reads(reads, 500)]
    done = run_command(["run", str(shared_reads), "--out", "results"], tmp_path, demo_model_settings)
    assert done.returncode == 0, done.stderr[-3000:]
    report = tmp_path / "results" / "store" / "sample_report" / "sample=lib7"
    assert done.stdout.splitlines()[:5] == [
        f"lib7 ({shared_reads}): results in {report}",
        f"  {report}/prediction_results.txt",
        f"  {report}/prediction_results_highestscore.csv",
        f"  {report}/per_read.tsv",
        f"  {report}/report.html",
    ]
    assert (report / "per_read.tsv").read_text().count("\n") == 1 + len(reads)  # every read, with a header
    assert "<html" in (report / "report.html").read_text()
    results = (report / "prediction_results.txt").read_text().splitlines()
    assert results[0] == "Sequence_ID\tPrediction\tscore1\tscore2"
    assert [line.split("\t")[0] for line in results[1:]] == pair_ids
    highest = (report / "prediction_results_highestscore.csv").read_text().splitlines()
    assert highest[0] == "Modified_ID\tIs_Virus"
    assert [line.split("\t")[0] for line in highest[1:]] == sorted({pair_id[:-2] for pair_id in pair_ids})
    # Not a terminal: a plain line per stored asset partition, 1 + 2 shards x 5 + 1 of them, with the GPU tokens.
    progress = [line for line in done.stderr.splitlines() if line.startswith("[")]
    # sample_reads, 6 assets of each of the 2 shards, sample_report
    assert [line.split("]")[0] for line in progress] == [f"[{n}/14" for n in range(1, 15)]
    assert progress[-1].startswith("[14/14] sample_report [lib7] done; shards 2/2")
    assert "tokens" in next(line for line in progress if "esm2_embeddings [lib7|001]" in line)
    assert "Traceback" not in done.stderr and "DEBUG" not in done.stderr
    assert (tmp_path / "results" / "dagster_home" / "dagster.yaml").is_file()


def test_a_failing_step_is_one_line(tmp_path, demo_model_settings):
    proteins = tmp_path / "proteins.fasta"
    proteins.write_text(">p1\nMKVLLEQRSTWY\n")
    done = run_command(["run", str(proteins), "--out", "results"], tmp_path, demo_model_settings)
    assert done.returncode == 1
    assert done.stderr.startswith(f"virnucpro-assets: error: {proteins}")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


# --- `remove-sample` ---------------------------------------------------------------------------


def instance_of(home: str):
    import dagster as dg

    return dg.DagsterInstance.from_config(home)


@pytest.mark.long(18)
def test_remove_sample_deletes_its_files_entry_and_partition_only(tmp_path, genome_reads):
    import dagster as dg

    env = {"DAGSTER_HOME": str(tmp_path / "dagster_home"), "VIRNUCPRO_STORE": str(tmp_path / "store")}
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    for name, reads in (("keep", genome_reads[:12]), ("drop", genome_reads[12:24])):
        write_fastq(reads, tmp_path / f"{name}.fq")
        assert run_command(["add-sample", str(tmp_path / f"{name}.fq")], tmp_path, env).returncode == 0
        materialize = [BIN / "dagster", "asset", "materialize", "-m", "virnucpro_assets", "--select", "sample_reads", "--partition", name]
        assert run(materialize, tmp_path).returncode == 0
    store = tmp_path / "store"
    # What a later step would have left: another asset's directory, with a withdrawn shard in it.
    (store / "translated_proteins" / "sample=drop").mkdir(parents=True)
    (store / "translated_proteins" / "sample=drop" / ".shard=001.parquet.failed-check").write_bytes(b"withdrawn")
    assert (store / "_samples" / "drop.json").exists()

    refused = run_command(["remove-sample", "drop"], tmp_path, env, stdin=subprocess.DEVNULL)
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    assert (store / "sample_reads" / "sample=drop").exists()

    # A run of one of its shards still going: nothing is removed.
    running = dg.DagsterRun(job_name="shard_pipeline", run_id="5ca1ab1e-0000-4000-8000-000000000001",
                           status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": "drop|001"})  # fmt: skip
    with instance_of(env["DAGSTER_HOME"]) as instance:
        instance.add_run(running)
    busy = run_command(["remove-sample", "drop", "--yes"], tmp_path, env)
    assert busy.returncode == 1 and f"1 run of it is queued or running ({running.run_id} (started, drop|001))" in busy.stderr
    assert (store / "sample_reads" / "sample=drop").exists() and (store / "_samples" / "drop.json").exists()
    with instance_of(env["DAGSTER_HOME"]) as instance:
        instance.delete_run(running.run_id)

    removed = run_command(["remove-sample", "drop", "--yes"], tmp_path, env)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == "removed sample 'drop': 2 stored directories, its registry entry and its partition"
    assert not (store / "sample_reads" / "sample=drop").exists() and not (store / "translated_proteins" / "sample=drop").exists()
    assert not (store / "_samples" / "drop.json").exists()
    assert (store / "sample_reads" / "sample=keep").is_dir()
    assert (store / "sample_reads" / "sample=keep" / "shard=000.parquet").is_file()
    assert (store / "_samples" / "keep.json").exists()
    with instance_of(env["DAGSTER_HOME"]) as instance:
        assert instance.get_dynamic_partitions("samples") == ["keep"]

    again = run_command(["remove-sample", "drop", "--yes"], tmp_path, env)
    assert again.returncode == 1 and "there is no sample 'drop'" in again.stderr
