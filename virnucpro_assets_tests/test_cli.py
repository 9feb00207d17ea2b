import os
import subprocess
import sys
from pathlib import Path

from virnucpro_assets.demo.reads import write_fastq

BIN = Path(sys.executable).parent


def run(args, home, **kwargs):
    env = {**os.environ, "DAGSTER_HOME": str(home / "dagster_home"), "VIRNUCPRO_STORE": str(home / "store"), "VIRNUCPRO_SHARDS": "2"}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1], **kwargs)


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
