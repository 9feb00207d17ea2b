"""Model settings of the embedding and classifier assets, and the code versions they imply."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from virnucpro_assets import settings
from virnucpro_assets.errors import ConfigurationError, ModelNotFoundError
from virnucpro_assets.models.identity import fingerprint, hash_files

PRECISIONS = {"auto", "fp32", "fp16", "bf16"}
# The assets that load each model: a run's preflight checks the models its assets need.
MODEL_OF_ASSET = {
    "dnabert_tokens": "dnabert",
    "dnabert_embeddings": "dnabert",
    "esm2_embeddings": "esm2",
    "predictions": "classifier",
    "training_dnabert_tokens": "dnabert",
    "training_dnabert_embeddings": "dnabert",
    "training_esm2_embeddings": "esm2",
}
COMPILABLE = ("dnabert", "esm2")  # the ModelsResource fields naming the embedding models


class ModelsResource(dg.ConfigurableResource):
    """Which models the pipeline uses and how it runs them.

    precision: "auto" is fp32 on the CPU and fp16 on a GPU for both models: ESM-2 was trained in
    fp16, a published refactor measured poor score agreement with bf16 on real ESM-2 weights, and on
    the H100 benchmarks bf16's 8-bit mantissa already costs DNABERT-S agreement (min cosine 0.9987
    against fp32, under the 0.999 that fp16 clears) for 3-18 % more speed. "fp32" reproduces the
    original's arithmetic everywhere. `virnucpro-assets compare-precision` measures half against
    fp32 on your own weights and sequences.

    Token budgets bound the padded tokens of one batch; None (the default) sizes them from the free
    memory of the device once the model is loaded (the original's 2048 and 8192 on the CPU).
    """

    dnabert: str = settings.DEFAULT_DNABERT_MODEL
    esm2: str = settings.DEFAULT_ESM2_MODEL
    classifier: str = ""
    precision: str = "auto"
    dnabert_token_budget: int | None = None
    esm2_token_budget: int | None = None
    # Models whose layers are torch.compile'd on a GPU (comma-separated; "none" for none). ESM-2 by
    # default: +19 % tokens/s on an H100, for 15-19 s of compilation in a machine's first step and
    # 1-4 s in later ones (the graphs are cached on disk), plus 10-14 s of importing the compiler in
    # every run process, done in the background from the run's start (setup_for_execution).
    # DNABERT-S gains nothing on 150-bp reads.
    compile: str = "esm2"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """At the start of a run: check the models the run's assets need (virnucpro_assets.preflight),
        so that a missing one fails the run at once, naming it, rather than after its CPU steps; then,
        on a GPU machine, where the run embeds with a compiled model, import the compiler in the
        background (see virnucpro_assets.models.compilation.start_warm_up). A run that loads no
        model imports no torch."""
        from virnucpro_assets.preflight import require_models

        compiled = self.compiled_models()
        needed = self.models_needed_by(context.run)
        if needed:
            # The chunk length is the translation resource's; the predictions step checks it.
            require_models(self.dnabert, self.esm2, self.classifier, None, needed)

        if compiled & set(needed):
            import torch

            if torch.cuda.is_available():
                from virnucpro_assets.models.compilation import start_warm_up

                start_warm_up()

    @staticmethod
    def models_needed_by(run: dg.DagsterRun | None) -> tuple[str, ...]:
        """The models the run's assets load, from the steps it executes (an asset's step is named
        after it) or else its asset selection; all of them when the run names neither, none
        outside a run."""
        if run is None:
            return ()
        if run.step_keys_to_execute is not None:
            selected = set(run.step_keys_to_execute)
        elif run.asset_selection:
            selected = {key.to_user_string() for key in run.asset_selection}
        else:
            selected = set(MODEL_OF_ASSET)
        return tuple(dict.fromkeys(model for asset, model in MODEL_OF_ASSET.items() if asset in selected))

    def compiled_models(self) -> set[str]:
        names = {name.strip() for name in self.compile.split(",")} - {"", "none"}
        unknown = names - set(COMPILABLE)
        if unknown:
            raise ConfigurationError(
                f"models.compile={self.compile!r}: {', '.join(sorted(unknown))} is not a model; "
                f"use a comma-separated list of {', '.join(COMPILABLE)}, or none"
            )
        return names

    def torch_dtype(self, device: str):
        import torch

        if self.precision not in PRECISIONS:
            raise ConfigurationError(f"models.precision={self.precision!r}: choose one of {sorted(PRECISIONS)}")
        if self.precision == "fp32" or (self.precision == "auto" and not device.startswith("cuda")):
            return torch.float32
        return torch.bfloat16 if self.precision == "bf16" else torch.float16

    def classifier_path(self) -> Path:
        if not self.classifier:
            raise ModelNotFoundError(
                "no classifier configured: set VIRNUCPRO_CLASSIFIER to the original's 300_model.pth / "
                "500_model.pth (from the VirNucPro repository) or to a native .safetensors classifier"
            )
        return Path(self.classifier).expanduser()


def dnabert_embedder() -> type:
    """DnabertEmbedder, imported by the GPU step that uses it: the code location itself loads
    without torch, so that its CPU-only runs (sample_reads, sample_report) do not import it."""
    from virnucpro_assets.models.dnabert2.embedder import DnabertEmbedder

    return DnabertEmbedder


def esm2_embedder() -> type:
    """Esm2Embedder, imported by the GPU step that uses it (see dnabert_embedder)."""
    from virnucpro_assets.models.esm2.embedder import Esm2Embedder

    return Esm2Embedder


def dnabert_version(source: str) -> str:
    candidates = [Path(source).expanduser()]
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "model.safetensors")
        if isinstance(cached, str):
            candidates.append(Path(cached))
    except Exception:  # not a repo id: the local path is the only candidate
        pass
    return fingerprint(source, candidates)


def esm2_version(source: str) -> str:
    from virnucpro_assets.models.esm2.loading import hub_checkpoint_path

    candidates = [Path(source).expanduser()]
    if source.startswith("esm2_t") and "/" not in source:
        candidates.append(hub_checkpoint_path(source))
    return fingerprint(source, candidates)


def classifier_version(source: str) -> str:
    """The classifier's name and weight hash (sha256 of its files, cached by size and mtime: they
    are a few MB), so predictions made with another classifier, a retrained one included, show
    as stale."""
    if not source:
        return "none"
    path = Path(source).expanduser()
    files = [path.with_suffix(".safetensors"), path.with_suffix(".json")] if path.suffix in (".safetensors", ".json") else [path]
    if all(file.is_file() for file in files):
        return f"{path.name}@{hash_files(files)[:16]}"
    return fingerprint(source, [path])
