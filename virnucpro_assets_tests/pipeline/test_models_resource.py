"""What the models resource reads from its settings."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from virnucpro_assets.errors import ConfigurationError
from virnucpro_assets.pipeline.models import ModelsResource
from virnucpro_assets.pipeline.resources import deployment_resources
from virnucpro_assets.settings import Settings


@pytest.mark.parametrize(
    ("setting", "compiled"),
    [(None, {"esm2"}), ("", {"esm2"}), ("none", set()), ("esm2, dnabert", {"esm2", "dnabert"}), ("dnabert", {"dnabert"})],
)
def test_compiled_models_follow_the_setting(monkeypatch, setting, compiled):
    if setting is None:
        monkeypatch.delenv("VIRNUCPRO_COMPILE", raising=False)
    else:
        monkeypatch.setenv("VIRNUCPRO_COMPILE", setting)
    models = deployment_resources(Settings.from_environment())["models"]
    assert models.process_config_and_initialize().compiled_models() == compiled


def test_an_unknown_model_to_compile_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="esm3 is not a model"):
        ModelsResource(compile="esm2,esm3").compiled_models()


@pytest.mark.parametrize(
    ("compile", "gpu", "steps", "warmed"),
    [
        ("esm2", True, ["esm2_embeddings"], True),
        ("none", True, ["esm2_embeddings"], False),
        ("esm2", False, ["esm2_embeddings"], False),
        ("esm2", True, ["dnabert_embeddings", "predictions"], False),
        ("esm2", True, ["sample_report"], False),
    ],
)
def test_a_run_on_a_gpu_machine_that_compiles_starts_importing_the_compiler(monkeypatch, compile, gpu, steps, warmed):
    """Only a run that embeds with a compiled model imports the compiler in the background; a run
    that loads no model (sample_report) imports no torch for it."""
    import dagster as dg
    import torch

    from virnucpro_assets import preflight
    from virnucpro_assets.models import compilation

    started = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(compilation, "start_warm_up", lambda: started.append(True))
    monkeypatch.setattr(preflight, "require_models", lambda *args: None)
    run = dg.DagsterRun(job_name="shard_pipeline", step_keys_to_execute=steps)
    ModelsResource(compile=compile).setup_for_execution(SimpleNamespace(run=run))  # what a run's set-up calls
    assert bool(started) == warmed
