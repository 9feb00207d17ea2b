"""What the models resource reads from its settings."""

from __future__ import annotations

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


@pytest.mark.parametrize(("compile", "gpu", "warmed"), [("esm2", True, True), ("none", True, False), ("esm2", False, False)])
def test_a_run_on_a_gpu_machine_that_compiles_starts_importing_the_compiler(monkeypatch, compile, gpu, warmed):
    import torch

    from virnucpro_assets.models import compilation

    started = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(compilation, "start_warm_up", lambda: started.append(True))
    with ModelsResource(compile=compile).process_config_and_initialize_cm():
        pass
    assert bool(started) == warmed
