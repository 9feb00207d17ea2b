"""The benchmarks run on the CPU, with tiny models or small tables, and print what they promise. Speed
is measured by running them (see the README), never here."""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks import (
    compiler_warm_up,
    distributed,
    dnabert_throughput,
    duplicates,
    embedding_cache,
    esm2_fp8,
    esm2_throughput,
    ingest,
    io_managers,
    multi_gpu,
    pipeline,
    report,
    tensor_store,
)


def run(module, monkeypatch, capsys, *arguments) -> list[dict]:
    monkeypatch.setattr(sys, "argv", [module.__name__, *map(str, arguments)])
    module.main()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def by_variant(lines: list[dict]) -> dict[str, dict]:
    return {line["variant"]: line for line in lines if "variant" in line}


def test_esm2_throughput(monkeypatch, capsys):
    lines = run(
        esm2_throughput,
        monkeypatch,
        capsys,
        "--device",
        "cpu",
        "--layers",
        1,
        "--dim",
        16,
        "--heads",
        2,
        "--reads",
        30,
        "--read-lengths",
        150,
        "--budgets",
        1024,
        "--original-batches",
        1,
        "--matmul-size",
        64,
        "--no-bf16",
    )
    assert lines[0]["benchmark"] == "matmul_peak"
    variants = by_variant(lines)
    assert set(variants) == {
        "original (fair-esm fp32, 2048-token batches, subset)",
        "project fp32 (single pass)",
        "project fp16 budget 1024",
    }
    assert variants["project fp32 (single pass)"]["fair_esm_vs_project_fp32"]["min_cosine"] >= 0.9999
    half = variants["project fp16 budget 1024"]
    assert half["vs_fp32"]["finite"] and half["vs_fp32"]["min_cosine"] >= 0.999
    assert {"tokens_per_s", "sequences_per_s", "fraction_of_matmul_peak", "ratio_to_original"} <= set(half)


def test_esm2_fp8(monkeypatch, capsys):
    lines = run(
        esm2_fp8,
        monkeypatch,
        capsys,
        "--device",
        "cpu",
        "--layers",
        1,
        "--dim",
        32,
        "--heads",
        2,
        "--reads",
        30,
        "--read-lengths",
        150,
        "--repeats",
        1,
    )
    variants = by_variant(lines)
    assert set(variants) == set(esm2_fp8.VARIANTS)
    assert variants["fp16"]["speedup_over_fp16"] == 1.0
    for line in variants.values():
        assert line["vs_fp32"]["finite"] and line["tokens_per_s"] > 0
    # Float8 rounding (3 mantissa bits) moves the vectors; fp16 (10 bits) hardly does.
    assert variants["fp8 all linears"]["vs_fp32"]["min_cosine"] < variants["fp16"]["vs_fp32"]["min_cosine"]
    assert variants["fp8 all linears"]["vs_fp32"]["min_cosine"] > 0.9


def test_fp8_linear_is_the_linear_within_float8_rounding():
    import torch

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(5, 7, 64)
    fp8 = esm2_fp8.Fp8Linear(linear)
    exact, approximate = linear(x), fp8(x)
    assert approximate.shape == exact.shape and approximate.dtype == x.dtype
    relative = (approximate - exact).norm() / exact.norm()
    assert 0 < relative < 0.08  # e4m3 keeps 3 mantissa bits: a few percent, never exact


def test_dnabert_throughput(monkeypatch, capsys):
    lines = run(
        dnabert_throughput,
        monkeypatch,
        capsys,
        "--device",
        "cpu",
        "--hidden",
        16,
        "--layers",
        1,
        "--heads",
        2,
        "--vocab",
        64,
        "--reads",
        30,
        "--read-lengths",
        150,
        "--budgets",
        1024,
        "--original-sequences",
        3,
        "--matmul-size",
        64,
        "--no-bf16",
        "--profile",
    )
    variants = by_variant(lines)
    assert variants["project fp32 (single pass)"]["original_vs_project_fp32"]["min_cosine"] >= 0.9999
    half = variants["project fp16 budget 1024"]
    assert half["vs_fp32"]["finite"] and half["vs_fp32"]["min_cosine"] >= 0.999
    assert variants["tokenization only"]["tokens"] == half["tokens"]
    given = variants["project fp16 budget 1024, token ids given"]
    assert given["tokens"] == half["tokens"] and given["vs_tokenizing_in_the_step"]["max_abs_diff"] == 0.0
    profile = variants["profile of project fp16 budget 1024, token ids given"]
    assert profile["top"] and profile["kernels_s"] > 0 and all(0 < share <= 1 for _, _, share in profile["top"])


@pytest.mark.long(10)
def test_pipeline(monkeypatch, capsys, tmp_path):
    for variable in (
        "VIRNUCPRO_SHARDS",
        "VIRNUCPRO_CHUNK_LENGTH",
        "VIRNUCPRO_STORE",
        "VIRNUCPRO_DNABERT_MODEL",
        "VIRNUCPRO_ESM2_MODEL",
        "VIRNUCPRO_CLASSIFIER",
    ):
        monkeypatch.setenv(variable, "")  # the benchmark sets them; monkeypatch puts them back
    lines = run(pipeline, monkeypatch, capsys, "--tiny", "--reads", "20,8", "--shards", 1, "--workdir", tmp_path)

    walls = {(line["reads"], line["asset"]): line for line in lines if line["benchmark"] == "pipeline" and "asset" in line}
    assert {asset for _, asset in walls} == set(pipeline.ASSETS)
    assert walls[(20, "esm2_embeddings")]["embed_s"] > 0
    (cold,) = [line for line in lines if line["benchmark"] == "pipeline_cold_start"]
    assert set(cold) == {"benchmark"} | {f"{asset}_s" for asset in pipeline.GPU_ASSETS}  # None with one shard
    projections = [line for line in lines if line["benchmark"] == "pipeline_projection"]
    assert [line["reads"] for line in projections] == list(pipeline.PROJECTED_READS)
    assert (tmp_path / "store" / "sample_report" / "sample=reads20").is_dir()


def test_duplicates(monkeypatch, capsys, tmp_path):
    lines = run(duplicates, monkeypatch, capsys, "--tiny", "--device", "cpu", "--reads", 300, "--shards", 2, "--genomes", tmp_path)
    sample = lines[0]
    assert sample["exact_duplicates"] == 90 and sample["phage_reads"] + sample["bacterial_reads"] == 210
    assert sample["distinct_reads"] < sample["reads"] and sample["distinct_proteins"] < sample["pairs"]
    variants = {(line["model"], line["variant"]): line for line in lines if "variant" in line}
    for model in ("dnabert", "esm2"):
        every, reduced = variants[(model, "every pair")], variants[(model, "distinct per shard")]
        assert every["pairs"] == reduced["pairs"] == every["sequences_embedded"] == sample["pairs"]
        assert reduced["sequences_embedded"] < every["sequences_embedded"] and reduced["tokens"] < every["tokens"]
    savings = {line["model"]: line for line in lines if "savings" in line}
    assert savings["esm2"]["distinct_in_sample"] == sample["distinct_proteins"]
    assert 0 < savings["esm2"]["tokens_saved"] < 1
    for model, line in savings.items():  # identical reads share a shard: more is saved than round robin would
        assert line["tokens_if_distinct_in_sample"] <= variants[(model, "distinct per shard")]["tokens"] < line["tokens_if_round_robin"]
        assert line["tokens_if_distinct_in_sample"] <= line["tokens_if_by_sequence_as_written"]
    comparison = lines[-1]
    assert comparison["decisions_differing"] == 0 and comparison["max_score_diff"] <= 1e-6
    assert max(comparison["max_vector_diff"].values()) <= 1e-6


def test_ingest(monkeypatch, capsys):
    split, *lines = run(ingest, monkeypatch, capsys, "--reads", 500, "--shards", 3)
    assert split["benchmark"] == "ingest" and split["reads"] == 500 and split["reads_per_s"] > 0
    parses = [line for line in lines if line["benchmark"] == "ingest_parse"]
    assert len(parses) == 3 and all(line["reads"] == 500 and line["seconds"] >= 0 for line in parses)
    keys = [line for line in lines if line["benchmark"] == "ingest_shard_key"]
    assert [line["key"] for line in keys] == ["either strand (shard_of_reads)", "as written"]
    assert all(line["reads"] == 500 and line["us_per_read"] > 0 for line in keys)


def test_report(monkeypatch, capsys):
    line, check = run(report, monkeypatch, capsys, "--reads", 2000, "--check-every", 1_000_003)
    assert line["reads"] == 2000 and line["pairs"] > 0 and line["scores_below_1e_4"] > 0
    assert line["identical"] and line["report_files_s"] > 0 and line["bytes_written"] > 0
    assert check["compared"] > 100 and check["differing"] == 0


def test_embedding_cache(monkeypatch, capsys, tmp_path):
    lines = run(
        embedding_cache,
        monkeypatch,
        capsys,
        "--tiny",
        "--device",
        "cpu",
        "--reads",
        200,
        "--shards",
        2,
        "--genomes",
        tmp_path,
        "--entries",
        200,
        "--per-file-entries",
        50,
        "--scan-entries",
        1000,
        "--scan-segments",
        "1,4",
    )
    sample = lines[0]
    assert sample["shared_reads"] == 100 and 0.4 < sample["second_sample_distinct_found_in_first"]["protein"] < 1
    runs = {(line["model"], line["variant"], line["sample"]): line for line in lines if "variant" in line}
    for model in ("dnabert", "esm2"):
        cold, warm = runs[(model, "with cache", "first")], runs[(model, "with cache", "second")]
        plain = runs[(model, "without cache", "second")]
        assert cold["cache_added"] == cold["distinct_sequences"] - cold["cache_hits"] > 0
        assert 0 < warm["cache_hits"] < warm["distinct_sequences"] == plain["distinct_sequences"]
        assert warm["tokens"] < plain["tokens"] and cold["cache_mb"] > 0
    savings = {line["model"]: line for line in lines if "savings" in line}
    assert all(0 < line["tokens_saved"] < 1 and line["overhead_first_sample"] > 0 for line in savings.values())
    comparisons = [line for line in lines if "comparison" in line]
    assert len(comparisons) == 2
    assert all(line["decisions_differing"] == 0 and max(line["max_vector_diff"].values()) <= 1e-6 for line in comparisons)
    granularity = {line["granularity"]: line for line in lines if "granularity" in line}
    assert {line["width"] for line in granularity.values()} == {768, 2560}
    assert all(line[f"{kind}_{step}_us"] > 0 for line in granularity.values() for kind in ("segment", "file") for step in ("add", "lookup"))
    assert [(line["scan_segments"], line["cache_entries"]) for line in lines if "scan_segments" in line] == [(1, 1000), (4, 1000)]


@pytest.mark.long(15)
def test_io_managers(monkeypatch, capsys, tmp_path):
    lines = run(io_managers, monkeypatch, capsys, "--reads", 300, "--repeats", 1, "--workdir", tmp_path)
    steps = {(line["asset"], line["variant"]): line for line in lines if "variant" in line}
    assert set(steps) == {(asset, variant) for asset in ("merged_features", "predictions") for variant in ("direct", "io_managers")}
    assert all(line["pairs"] == 416 and line["step_s"] > 0 and line["peak_rss_mib"] > 0 for line in steps.values())
    ratios = [line for line in lines if line.get("ratio") == "io_managers/direct"]
    assert [line["asset"] for line in ratios] == ["merged_features", "predictions"]
    digests = {line["algorithm"]: line for line in lines if line.get("measure") == "digests"}
    assert set(digests) == {"xxh3_128", "xxh3_128x64m"}
    assert all(0 < line["share_of_both_steps"] < 1 for line in digests.values())
    assert list(tmp_path.iterdir()) == []


def test_tensor_store(monkeypatch, capsys, tmp_path):
    lines = run(tensor_store, monkeypatch, capsys, "--rows", 50, "--width", 16, "--repeats", 1, "--workdir", tmp_path)
    formats = {line["format"]: line for line in lines if line["benchmark"] == "tensor_store"}
    assert set(formats) == {"parquet", "arrow_ipc"}
    assert all(line["write_s"] > 0 and line["load_s"] > 0 and line["file_mb"] >= 0 for line in formats.values())
    ratio = lines[-1]
    assert ratio["benchmark"] == "tensor_store_ratio" and ratio["parquet_over_arrow_load_s"] > 0
    assert list(tmp_path.iterdir()) == []  # the scratch files are gone


@pytest.mark.long(120)
def test_multi_gpu_on_simulated_devices(monkeypatch, capsys, tmp_path):
    """The real daemon, queued runs, pool and leases over two simulated devices, then one, and
    the comparison of both (GPU figures: README, "GPU speed and precision"); then the one-device
    configuration through Celery workers (a real Redis) in a second call, compared through `--against`."""
    for variable in ("VIRNUCPRO_SHARDS", "VIRNUCPRO_DNABERT_MODEL", "VIRNUCPRO_ESM2_MODEL", "VIRNUCPRO_CLASSIFIER"):
        monkeypatch.setenv(variable, "")  # the benchmark sets them; monkeypatch puts them back
    monkeypatch.setenv("VIRNUCPRO_SENSOR_INTERVAL", "1")  # automation hands each shard, then the report, on
    arguments = ("--tiny", "--fake-devices", 2, "--reads", 200, "--shards", 2)
    lines = run(multi_gpu, monkeypatch, capsys, *arguments, "--devices", "all,1", "--workdir", tmp_path / "in_process")

    runs = [line for line in lines if line["benchmark"] == "multi_gpu"]
    assert len(runs) == 2 and all(line["one_gpu_step_per_device_at_a_time"] for line in runs)
    assert all(line["tokens"] == runs[0]["tokens"] > 0 for line in runs)
    assert all(line["ingest_to_report_s"] > line["embedding_phase_s"] > 0 for line in runs)
    timelines = [line for line in lines if line["benchmark"] == "multi_gpu_timeline"]
    phases = ("ingest_s", "launch_s", "before_gpu_s", "embedding_phase_s", "after_gpu_s", "report_s")
    for timeline, run_line in zip(timelines, runs):
        assert timeline["launch"] == "automation" and timeline["automation_ticks"] >= 2  # the shards' runs, then the report's
        # Idle time is summed over the devices used.
        assert all(timeline[phase] >= 0 for phase in phases)
        assert 0 <= timeline["idle_gpu_s"] <= timeline["embedding_phase_s"] * timeline["devices_configured"]
        assert abs(sum(timeline[phase] for phase in phases) - run_line["ingest_to_report_s"]) < 0.5
    assets = [line for line in lines if line["benchmark"] == "multi_gpu_asset"]
    assert sorted(line["asset"] for line in assets) == sorted(multi_gpu.GPU_ASSETS * 2)
    assert all(line["steps"] == 2 and 0 < line["model_load_share"] < 1 for line in assets)
    devices = [line for line in lines if line["benchmark"] == "multi_gpu_device"]
    assert sum(line["gpu_steps"] for line in devices) == 2 * 2 * 2  # two GPU assets x two shards, per configuration
    (scaling,) = [line for line in lines if line["benchmark"] == "multi_gpu_scaling"]
    assert scaling["outputs_identical"]
    assert all(line["executor"] == "in_process" and line["gpu_step_workers"] == line["cpu_step_workers"] == [] for line in runs)

    saved = tmp_path / "in_process.jsonl"
    saved.write_text("".join(json.dumps(line) + "\n" for line in lines))
    lines = run(multi_gpu, monkeypatch, capsys, *arguments, "--devices", 1, "--executors", "celery",
                "--workdir", tmp_path / "celery", "--against", saved)  # fmt: skip
    (celery,) = [line for line in lines if line["benchmark"] == "multi_gpu"]
    assert celery["executor"] == "celery" and celery["devices"] == 1 and celery["one_gpu_step_per_device_at_a_time"]
    assert celery["tokens"] == runs[0]["tokens"] and celery["workers_ready_s"] > 0
    # Every step of the shard runs ran in a Celery worker: GPU steps in the one GPU worker, the others in the CPU worker.
    assert [name.split(".")[:2] for name in celery["gpu_step_workers"]] == [["gpu", "fake-0"]]
    assert [name.split(".")[0] for name in celery["cpu_step_workers"]] == ["cpu"]
    (comparison,) = [line for line in lines if line["benchmark"] == "multi_gpu_celery"]
    assert comparison["devices"] == 1 and comparison["outputs_identical"] and comparison["throughput_celery_over_in_process"] > 0


@pytest.mark.long(25)
def test_compiler_warm_up(monkeypatch, capsys):
    lines = run(
        compiler_warm_up,
        monkeypatch,
        capsys,
        "--pause",
        0,
        "--processes",
        1,
        "--layers",
        1,
        "--dim",
        16,
        "--heads",
        2,
        "--proteins",
        2,
    )
    steps, [summary] = lines[:-1], lines[-1:]
    assert [(s["cache_filling"], s["warm_up"]) for s in steps] == [(True, False), (False, False), (False, True)]
    assert all(s["load_s"] > 0 and s["second_embed_s"] > 0 for s in steps)
    assert summary["median_load_s_without"] == steps[1]["load_s"] and summary["median_load_s_with"] == steps[2]["load_s"]


def test_train_classifier(monkeypatch, capsys):
    from benchmarks import train_classifier

    lines = run(train_classifier, monkeypatch, capsys, "--rows", 300, "--width", 16, "--baseline-epochs", 2, "--devices", "cpu")
    features, epochs, summary, comparison = lines[0], lines[1:-2], lines[-2], lines[-1]
    assert features["rows"] == 300 and features["width"] == 16
    assert [line["epoch"] for line in epochs] == [1, 2] and all(line["seconds"] > 0 for line in epochs)
    assert (summary["device"], summary["path"], summary["epochs"]) == ("cpu", "eager", 2) and summary["epochs_per_s"] > 0
    assert comparison == {"benchmark": "train_classifier_comparison", "epochs_to_stop": None}


@pytest.mark.long(30)
def test_distributed(monkeypatch, capsys):
    """Real PostgreSQL, Redis, daemons and Celery workers of two simulated hosts, two short stand-in steps."""
    lines = run(distributed, monkeypatch, capsys, "--hosts", 2, "--devices-per-host", 1, "--partitions", 2, "--step-seconds", 0.2)
    single, celery, comparison = lines
    assert (single["path"], single["devices"], celery["path"], celery["hosts"]) == ("single host, in-process", 2, "celery", 2)
    assert set(celery["busy_fraction_per_device"]) <= {"host-0/fake-0", "host-1/fake-0"}
    for line in (single, celery):
        assert line["partitions"] == sum(line["steps_per_device"].values()) == 2
        assert all(0 < busy <= 1 for busy in line["busy_fraction_per_device"].values())
    assert comparison["benchmark"] == "distributed_comparison" and comparison["wall_celery_over_single"] > 0
