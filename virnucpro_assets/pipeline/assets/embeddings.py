"""The two language-model stages: one GPU step per shard, each on a device of its own."""

import time

import dagster as dg

from virnucpro_assets.models.dnabert2 import DnabertEmbedder
from virnucpro_assets.models.esm2 import Esm2Embedder
from virnucpro_assets.pipeline.assets.ingest import translated_proteins
from virnucpro_assets.pipeline.automation import follows_upstream
from virnucpro_assets.pipeline.gpu import GPU_POOL, GpuResource
from virnucpro_assets.pipeline.models import ModelsResource, dnabert_version, default_models, esm2_version
from virnucpro_assets.pipeline.partitions import sample_and_shard, sample_shard_partitions
from virnucpro_assets.pipeline.resources import StoreResource
from virnucpro_assets.storage import EMBEDDING_EXTENSION, read_table, write_embeddings

_configured = default_models()


def embed_shard(context, store: StoreResource, gpu: GpuResource, models: ModelsResource, *, column: str, load, budget: int | None):
    """Embed one shard's `column` of translated_proteins with the embedder `load(device, dtype)`
    returns, and write `<asset>/sample=…/shard=….arrow` from this step's own process."""
    sample, shard = sample_and_shard(context)
    pairs = read_table(store.store.upstream("translated_proteins", sample, shard, "parquet"), ["pair_id", column])
    with gpu.lease(context) as device:
        held_from = time.time()
        dtype = models.torch_dtype(device.torch_device)
        started = time.perf_counter()
        embedder = load(device.torch_device, dtype)
        loaded = time.perf_counter()
        result = embedder.embed(pairs.column(column).to_pylist(), token_budget=budget)
        embedded = time.perf_counter()
    held_until = time.time()
    path = store.store.shard_path(context.asset_key.to_user_string(), sample, shard, EMBEDDING_EXTENSION)
    write_embeddings(path, pairs.column("pair_id"), result.vectors)
    return dg.MaterializeResult(
        metadata={
            "rows": pairs.num_rows,
            "width": embedder.dim,
            "tokens": result.tokens,
            "tokens_per_s": round(result.tokens / max(embedded - loaded, 1e-9), 1),
            "model_load_s": round(loaded - started, 3),
            "embed_s": round(embedded - loaded, 3),
            "device": device.name,
            # When this step held its device (epoch seconds): what shows one step per device at a time.
            "device_held_from": held_from,
            "device_held_until": held_until,
            "precision": str(dtype).removeprefix("torch."),
            "model": embedder.identity.name,
            "model_sha256": embedder.identity.content_hash,
            "path": dg.MetadataValue.path(str(path)),
        }
    )


def embedding_asset(name: str, *, column: str, source: str, embedder, code_version: str, description: str):
    """A GPU step per sample × shard that embeds `column` with `embedder` (a class with
    `from_source`) loading the model named by the ModelsResource field `source`. `code_version`
    (the model's) is extended with the tensor store's format, so a store written in another
    format shows these partitions as having a new code version."""

    @dg.asset(
        name=name,
        partitions_def=sample_shard_partitions,
        automation_condition=follows_upstream,
        deps=[translated_proteins],
        pool=GPU_POOL,
        group_name="embeddings",
        kinds={"pytorch", EMBEDDING_EXTENSION},
        code_version=f"{code_version}|store={EMBEDDING_EXTENSION}",
        description=description,
    )
    def embeddings(
        context: dg.AssetExecutionContext, store: StoreResource, gpu: GpuResource, models: ModelsResource
    ) -> dg.MaterializeResult:
        def load(device: str, dtype):
            compiled = source in models.compiled_models() and device.startswith("cuda")
            return embedder.from_source(getattr(models, source), device=device, dtype=dtype, compiled=compiled)

        return embed_shard(context, store, gpu, models, column=column, load=load, budget=getattr(models, f"{source}_token_budget"))

    return embeddings


dnabert_embeddings = embedding_asset(
    "dnabert_embeddings",
    column="nucleotide",
    source="dnabert",
    embedder=DnabertEmbedder,
    code_version=dnabert_version(_configured.dnabert),
    description=(
        "DNABERT-S embedding of each kept frame's nucleotide string: the mean of the last hidden "
        "layer over all tokens, 768 floats per pair (GPU step)."
    ),
)

esm2_embeddings = embedding_asset(
    "esm2_embeddings",
    column="protein",
    source="esm2",
    embedder=Esm2Embedder,
    code_version=esm2_version(_configured.esm2),
    description=(
        "ESM-2 embedding of each kept frame's protein: the mean of the last layer over the residues, "
        "2560 floats per pair for ESM-2 3B (GPU step)."
    ),
)
