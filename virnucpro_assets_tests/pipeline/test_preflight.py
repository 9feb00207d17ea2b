"""The models' preflight: every bad model named with how to provide it, good ones passed, and the
start of a run failing only when the run needs the missing model."""

import shutil
import socket

import dagster as dg
import pytest

from virnucpro_assets.preflight import ModelsUnavailable, check_dnabert, check_esm2, check_models, require_models
from virnucpro_assets_tests.pipeline.conftest import SHARD_ASSETS, Pipeline


@pytest.fixture
def models(tmp_path, demo_models):
    """A private copy of the demo models, free to damage."""
    shutil.copytree(demo_models.dnabert, tmp_path / "dnabert")
    shutil.copyfile(demo_models.esm2, tmp_path / "esm2.pt")
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(demo_models.classifier.with_suffix(suffix), tmp_path / f"classifier{suffix}")
    return tmp_path / "dnabert", tmp_path / "esm2.pt", tmp_path / "classifier.safetensors"


def test_good_models_pass(models):
    dnabert, esm2, classifier = models
    assert check_models(str(dnabert), str(esm2), str(classifier), 500) == []


def test_every_bad_model_is_listed_with_how_to_provide_it(models, tmp_path):
    dnabert, esm2, classifier = models
    (dnabert / "tokenizer.json").unlink()
    esm2.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelsUnavailable) as raised:
        require_models(str(dnabert), str(esm2), str(tmp_path / "absent.pth"), 500)
    message = str(raised.value)
    lines = message.splitlines()
    assert lines[0] == "3 of the models are not usable, so nothing was run:"
    assert f"DNABERT-S (VIRNUCPRO_DNABERT_MODEL={dnabert}): {dnabert}: {dnabert / 'tokenizer.json'} does not exist" in lines[1]
    assert f"ESM-2 (VIRNUCPRO_ESM2_MODEL={esm2}): {esm2} is not a PyTorch checkpoint" in lines[2]
    assert f"classifier (VIRNUCPRO_CLASSIFIER={tmp_path / 'absent.pth'}): " in lines[3] and "does not exist" in lines[3]
    assert all("fetch-models" in line for line in lines[1:])


def test_damaged_files_are_found_without_loading_the_big_models(models):
    dnabert, _, _ = models
    (dnabert / "config.json").write_text("{cut short")
    weights = dnabert / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4])
    problem = check_dnabert(str(dnabert))
    assert "config.json is not valid JSON" in problem and "model.safetensors is not a safetensors file" in problem


def test_a_classifier_for_the_other_chunk_length_is_named(models):
    dnabert, esm2, classifier = models
    problems = check_models(str(dnabert), str(esm2), str(classifier), 300)
    assert [p.model for p in problems] == ["classifier"]
    assert "500" in problems[0].problem and "300" in problems[0].problem and "VIRNUCPRO_CHUNK_LENGTH" in problems[0].problem


def test_an_unset_classifier_and_an_unknown_esm2_name(models):
    dnabert, _, _ = models
    problems = {p.model: p for p in check_models(str(dnabert), "esm3_big", "", 500)}
    assert problems["classifier"].line().startswith("classifier (VIRNUCPRO_CLASSIFIER unset): not set")
    assert "neither a fair-esm ESM-2 model name" in problems["esm2"].problem


def test_names_absent_from_their_caches_need_a_download_site_that_answers(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    problem = check_esm2("esm2_t6_8M_UR50D", download_url=f"http://127.0.0.1:{port}/esm2_t6_8M_UR50D.pt")
    assert f"not in torch hub's cache ({tmp_path / 'torch' / 'hub' / 'checkpoints' / 'esm2_t6_8M_UR50D.pt'})" in problem
    assert "cannot be reached" in problem

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    problem = check_dnabert("zhihan1996/DNABERT-S")
    assert "not in the Hugging Face cache" in problem and "HF_HUB_OFFLINE" in problem


def test_a_cached_esm2_name_is_checked_in_torch_hubs_cache(monkeypatch, tmp_path, models):
    _, esm2, _ = models
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "esm2_t6_8M_UR50D.pt"
    cached.parent.mkdir(parents=True)
    shutil.copyfile(esm2, cached)
    assert check_esm2("esm2_t6_8M_UR50D") is None
    cached.write_bytes(b"\x00" * 10)
    assert "torch hub's cached copy of esm2_t6_8M_UR50D" in check_esm2("esm2_t6_8M_UR50D")


def test_a_run_fails_at_its_start_only_when_it_needs_the_missing_model(tmp_path, demo_models, genome_reads):
    from virnucpro_assets.pipeline.models import ModelsResource

    pipeline = Pipeline(tmp_path, demo_models)
    missing = tmp_path / "no_dnabert"
    pipeline.resources["models"] = ModelsResource(dnabert=str(missing), esm2=str(demo_models.esm2), classifier=str(demo_models.classifier))
    sample = pipeline.register([r for r in genome_reads if len(r[1]) >= 150][:12], "s")
    pipeline.materialize(["sample_reads"], sample)  # needs no model: runs

    shard = pipeline.shard_partitions(sample)[0]
    with pytest.raises(dg.DagsterResourceFunctionError) as raised:
        pipeline.materialize(SHARD_ASSETS, shard)
    assert isinstance(raised.value.user_exception, ModelsUnavailable)
    assert str(raised.value.user_exception).splitlines()[1] == (
        f"  - DNABERT-S (VIRNUCPRO_DNABERT_MODEL={missing}): {missing} is not a directory: give a directory holding "
        "config.json, model.safetensors or pytorch_model.bin, and tokenizer.json, or a Hugging Face repo id "
        "(`virnucpro-assets fetch-models` downloads it)"
    )
    assert not (pipeline.store_root / "translated_proteins").exists()  # failed before its first step

    pipeline.materialize(["translated_proteins", "esm2_embeddings"], shard)  # DNABERT-S not needed: runs
    assert (pipeline.store_root / "esm2_embeddings" / "sample=s").is_dir()


def test_which_models_a_run_needs():
    from virnucpro_assets.pipeline.models import ModelsResource

    def run(steps=None, assets=None):
        return dg.DagsterRun(
            job_name="j", step_keys_to_execute=steps, asset_selection=frozenset(dg.AssetKey(a) for a in assets) if assets else None
        )

    assert ModelsResource.models_needed_by(None) == ()
    assert ModelsResource.models_needed_by(run()) == ("dnabert", "esm2", "classifier")
    assert ModelsResource.models_needed_by(run(["sample_reads", "translated_proteins"])) == ()
    assert ModelsResource.models_needed_by(run(["predictions", "dnabert_embeddings"])) == ("dnabert", "classifier")
    assert ModelsResource.models_needed_by(run(assets=["esm2_embeddings", "sample_report"])) == ("esm2",)
