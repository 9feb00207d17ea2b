"""The training commands as a user runs them, as processes: `add-training-genomes` and
`demo --train`, then the instance and store they leave behind read back."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._utils.test.data_versions import get_stale_status_resolver  # what the UI's stale badges use

from virnucpro_assets.definitions import build_definitions
from virnucpro_assets.demo import GENOMES, HELD_BACK_GENOMES
from virnucpro_assets.demo.reads import load_genomes
from virnucpro_assets.demo.training import HELD_BACK_READS_PER_CLASS, HELD_BACK_SAMPLE, write_training_genomes
from virnucpro_assets.pipeline.models import classifier_version
from virnucpro_assets.pipeline.partitions import TRAINING_SETS, Partitions
from virnucpro_assets.settings import Settings, resolve_classifier
from virnucpro_assets.training.genbank import write_genbank

BIN = Path(sys.executable).parent
CHECKOUT = Path(__file__).resolve().parents[2]


def cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "VIRNUCPRO_"))}
    environment = {**clean, "PYTHONPATH": str(CHECKOUT), "OMP_NUM_THREADS": "1", "VIRNUCPRO_CHUNK_LENGTH": "500", **env}
    return subprocess.run([BIN / "virnucpro-assets", *args], env=environment, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_add_training_genomes_adds_a_file_once_and_names_a_bad_record(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    instance_env = {"DAGSTER_HOME": str(home), "VIRNUCPRO_STORE": str(tmp_path / "store")}
    phix = next(g for g in GENOMES if "phiX" in g.name)
    [(good, _)] = write_training_genomes([phix], tmp_path / "genbank")
    bad = tmp_path / "two records.gbk"
    write_genbank([("rec1.1", "ATGAAATTTTAA" * 10, [], "one"), ("rec2.1", "ATGCCC" * 10, [], "two")], bad)
    text = bad.read_text()
    bad.write_text(text[: text.rindex("ORIGIN")] + "ORIGIN\n//\n")  # the second record's sequence is gone

    added = cli(tmp_path, "add-training-genomes", str(good), "--label", "viral", "--set", "mine", **instance_env)
    assert added.returncode == 0, added.stderr
    assert added.stdout == "phage_phiX174: 1 records, viral (viral) in training set partition mine-500\n"
    again = cli(tmp_path, "add-training-genomes", str(good), "--label", "viral", "--set", "mine", **instance_env)
    assert again.returncode == 0 and again.stderr == f"(already in the set: {good})\n"
    refused = cli(tmp_path, "add-training-genomes", str(bad), "--label", "other", "--set", "mine", **instance_env)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"virnucpro-assets: error: {bad}: record 2 (rec2.1) has no sequence")
    assert len(refused.stderr.splitlines()) == 1

    entries = json.loads((tmp_path / "store" / "_training" / "mine.json").read_text())
    assert [(e["name"], e["label"], e["records"]) for e in entries] == [("phage_phiX174", "viral", 1)]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions(TRAINING_SETS) == ["mine-500"]


@pytest.mark.long(15)
def test_training_demo_trains_then_predicts_held_back_reads_with_its_classifier(tmp_path, monkeypatch):
    demo = tmp_path / "demo"
    done = cli(tmp_path, "demo", "--train", "--home", str(demo), VIRNUCPRO_SHARDS="1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = demo / "store"
    classifier_dir = store / "classifier" / "sample=demo-500"
    report = store / "sample_report" / f"sample={HELD_BACK_SAMPLE}"
    lines = done.stdout.splitlines()
    assert f"  classifier demo-500: {classifier_dir / 'classifier.safetensors'}" in lines
    assert f"  held-back sample {HELD_BACK_SAMPLE}: {report / 'per_read.tsv'}, report.html" in lines
    metrics = json.loads((classifier_dir / "metrics.json").read_text())
    assert any(line.startswith(f"test AUROC {metrics['test_auroc']:.4f} (kept epoch {metrics['kept_epoch']} of ") for line in lines)
    pattern = r"held-back (viral|other) reads: (\d+) called virus, (\d+) others, (\d+) unscored, of (\d+)"
    matches = [re.fullmatch(pattern, line) for line in lines]
    called = {m[1]: [int(n) for n in m.groups()[1:]] for m in matches if m}
    assert set(called) == {"viral", "other"}
    assert all(sum(counts[:3]) == counts[3] == HELD_BACK_READS_PER_CLASS for counts in called.values())
    per_read = (report / "per_read.tsv").read_text().splitlines()[1:]
    decisions = [line.split("\t")[-2] for line in per_read]
    assert [decisions.count(d) for d in ("virus", "others", "unscored")] == [a + b for a, b in zip(called["viral"], called["other"])][:3]
    held_back_records = {record_id for record_id, _ in load_genomes(HELD_BACK_GENOMES)}
    assert {line.split(":")[0] for line in per_read} <= held_back_records

    # The predictions carry the trained classifier's weight hash as their code version: made with
    # another classifier, they are stale; with this one, fresh.
    trained = resolve_classifier("trained:demo-500", str(store))
    sha = (classifier_dir / "classifier.sha256").read_text().strip()
    assert classifier_version(trained) == f"classifier.safetensors@{sha[:16]}"
    with dg.DagsterInstance.from_config(str(demo / "dagster_home")) as instance:
        partition = dg.MultiPartitionKey({"sample": HELD_BACK_SAMPLE, "shard": "000"})
        latest = dg.AssetRecordsFilter(asset_key=dg.AssetKey("predictions"), asset_partitions=[partition])
        [record] = instance.fetch_materializations(latest, limit=1).records
        assert record.asset_materialization.tags["dagster/code_version"] == classifier_version(trained)
        statuses = {}
        for name, classifier in (("trained", trained), ("random", str(demo / "models" / "demo_classifier_500.safetensors"))):
            monkeypatch.setenv("VIRNUCPRO_STORE", str(store))
            monkeypatch.setenv("VIRNUCPRO_SHARDS", "1")
            settings = dataclasses.replace(
                Settings.from_environment(),
                dnabert_model=str(demo / "models" / "dnabert2_demo"),
                esm2_model=str(demo / "models" / "esm2_demo.pt"),
                classifier=classifier,
            )
            defs = build_definitions(settings, Partitions(1))
            resolver = get_stale_status_resolver(instance, list(defs.assets))
            statuses[name] = resolver.get_status(dg.AssetKey("predictions"), partition).value
        assert statuses == {"trained": "FRESH", "random": "STALE"}
