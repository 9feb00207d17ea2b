"""The two language-model stages: one GPU step per shard, each on a device of its own, and the CPU
step that tokenizes for DNABERT-S ahead of its GPU step."""

import functools
import time

import dagster as dg
import pyarrow as pa

from virnucpro_assets.models.distinct import distinct_sequences, embed_distinct
from virnucpro_assets.models.dnabert2.loading import load_dnabert_tokenizer, resolve_dnabert_source
from virnucpro_assets.models.dnabert2.tokens import TokenTable
from virnucpro_assets.pipeline.automation import follows_upstream
from virnucpro_assets.pipeline.executors import GPU_STEP_TAGS
from virnucpro_assets.pipeline.gpu import GPU_POOL, GpuResource
from virnucpro_assets.pipeline.models import ModelsResource, dnabert_embedder, dnabert_version, esm2_embedder, esm2_version
from virnucpro_assets.pipeline.resources import StoreResource
from virnucpro_assets.settings import Settings
from virnucpro_assets.storage import EMBEDDING_EXTENSION, EmbeddingTable
from virnucpro_assets.storage.embedding_cache import EmbeddingCache


def embedding_asset(
    partitions_def: dg.MultiPartitionsDefinition,
    name: str,
    *,
    column: str,
    source: str,
    embedder,
    code_version: str,
    description: str,
    pairs: str = "translated_proteins",
    tokens: str | None = None,
    group_name: str = "embeddings",
):
    """A GPU step per partition (sample × shard, or training set × shard) that embeds the `pairs`
    asset's `column` with `embedder()` (a class with `from_source`, imported by the step) loading the model named by the
    ModelsResource field `source`, each distinct sequence of the shard once (every pair gets its
    sequence's vector), with the token ids of the asset `tokens` where one is named (a TokenTable
    of the distinct sequences, made by a CPU step). Its output is written by the IO manager from
    this step's own process. `code_version` (the model's) is extended with the tensor store's format."""
    ins = {"translated_proteins": dg.AssetIn(key=pairs, metadata={"columns": ["pair_id", column]})}
    if tokens:
        ins["tokens"] = dg.AssetIn(key=tokens)

    @dg.asset(
        name=name,
        partitions_def=partitions_def,
        ins=ins,
        io_manager_key="tensor_io_manager",
        automation_condition=follows_upstream,
        pool=GPU_POOL,
        op_tags=GPU_STEP_TAGS,
        group_name=group_name,
        kinds={"pytorch", EMBEDDING_EXTENSION},
        code_version=f"{code_version}|store={EMBEDDING_EXTENSION}",
        description=description,
    )
    def embeddings(
        context: dg.AssetExecutionContext,
        translated_proteins: pa.Table,
        gpu: GpuResource,
        models: ModelsResource,
        store: StoreResource,
        **pretokenized: pa.Table,
    ) -> dg.Output[EmbeddingTable]:
        distinct = distinct_sequences(translated_proteins.column(column))
        token_table = TokenTable.from_arrow(pretokenized["tokens"]) if tokens else None
        with gpu.lease(context) as device:
            held_from = time.time()
            dtype = models.torch_dtype(device.torch_device)
            precision = str(dtype).removeprefix("torch.")
            started = time.perf_counter()
            compiled = source in models.compiled_models() and device.torch_device.startswith("cuda")
            model = embedder().from_source(getattr(models, source), device=device.torch_device, dtype=dtype, compiled=compiled)
            loaded = time.perf_counter()
            embed = functools.partial(
                model.embed,
                token_budget=getattr(models, f"{source}_token_budget"),
                on_progress=progress_logger(context.log, f"{name} [{context.partition_key}] on {device.identity}"),
            )
            if token_table is not None:
                embed = with_token_ids(embed, token_table, f"{tokens} [{context.partition_key}]")
            cache = store.embedding_cache_of(source, model, precision)
            result = embed_distinct(embed, distinct, cache)
            embedded = time.perf_counter()
        held_until = time.time()
        embed_s = embedded - loaded - (cache.stats.lookup_s + cache.stats.add_s if cache else 0.0)
        return dg.Output(
            EmbeddingTable(translated_proteins.column("pair_id").combine_chunks(), distinct.expand(result.vectors)),
            metadata={
                "model_width": model.dim,
                "pairs": distinct.rows,
                "distinct_sequences": len(distinct.sequences),
                # Tokens of the distinct sequences the model ran (those not found in the cache).
                "tokens": result.tokens,
                "tokens_per_s": round(result.tokens / max(embed_s, 1e-9), 1),
                "model_load_s": round(loaded - started, 3),
                "embed_s": round(embed_s, 3),
                **cache_metadata(cache),
                "device": device.identity,
                # When this step held its device (epoch seconds): what shows one step per device at a time.
                "device_held_from": held_from,
                "device_held_until": held_until,
                "precision": precision,
                "model": model.identity.name,
                "model_sha256": model.identity.content_hash,
            },
        )

    return embeddings


def with_token_ids(embed, token_table: TokenTable, source: str):
    """`embed` given the token ids of the sequences it is asked to embed, from `token_table`."""

    def embed_tokenized(sequences: list[str]):
        return embed(sequences, pretokenized=token_table.for_sequences(sequences, source))

    return embed_tokenized


def tokens_asset(
    partitions_def: dg.MultiPartitionsDefinition,
    name: str,
    *,
    column: str,
    code_version: str,
    description: str,
    pairs: str = "translated_proteins",
    group_name: str = "embeddings",
):
    """A CPU step per partition that tokenizes each distinct string of the `pairs` asset's
    `column` for DNABERT-S (its tokenizer.json, from the ModelsResource field `dnabert`), so that
    the GPU step spends none of its time tokenizing: a TokenTable, in order of first occurrence."""

    @dg.asset(
        name=name,
        partitions_def=partitions_def,
        ins={"translated_proteins": dg.AssetIn(key=pairs, metadata={"columns": [column]})},
        io_manager_key="table_io_manager",
        automation_condition=follows_upstream,
        group_name=group_name,
        kinds={"parquet"},
        code_version=code_version,
        description=description,
    )
    def tokens(translated_proteins: pa.Table, models: ModelsResource) -> dg.Output[pa.Table]:
        distinct = distinct_sequences(translated_proteins.column(column))
        started = time.perf_counter()
        table = TokenTable.of(load_dnabert_tokenizer(resolve_dnabert_source(models.dnabert)), distinct.sequences)
        return dg.Output(
            table.to_arrow(),
            metadata={
                "pairs": distinct.rows,
                "distinct_sequences": len(distinct.sequences),
                "tokens": int(table.tokens.lengths.sum()),
                "tokenize_s": round(time.perf_counter() - started, 3),
            },
        )

    return tokens


def cache_metadata(cache: EmbeddingCache | None) -> dict:
    """What a step's embedding cache did: distinct sequences found (hits) and embedded and added
    (misses), entries that failed their check, seconds of lookup and addition."""
    if cache is None:
        return {"embedding_cache": "off"}
    stats = cache.stats
    metadata = {
        "embedding_cache": str(cache.namespace),
        "cache_hits": stats.hits,
        "cache_misses": stats.misses,
        "cache_added": stats.added,
        "cache_corrupt": stats.corrupt,
        "cache_evicted_segments": stats.evicted_segments,
        "cache_lookup_s": round(stats.lookup_s, 3),
        "cache_add_s": round(stats.add_s, 3),
    }
    if stats.errors:
        metadata["cache_errors"] = dg.MetadataValue.md("\n".join(f"- {error}" for error in stats.errors))
    return metadata


def progress_logger(log, label: str, clock=time.monotonic):
    """An embedder's `on_progress` callback (called about every 10 s) that logs to the run log."""
    started = clock()

    def report(done: int, total: int, tokens: int) -> None:
        log.info(progress_message(label, done, total, tokens, clock() - started))

    return report


def progress_message(label: str, done: int, total: int, tokens: int, elapsed: float) -> str:
    """'esm2_embeddings [s|000] on cuda:0: 12,000 of 48,000 distinct sequences (25%), 95,100 tokens/s, about 3 min 20 s left'
    (each distinct sequence is embedded once, so the totals count distinct sequences, not pairs)"""
    rate = tokens / elapsed if elapsed > 0 else 0.0
    left = elapsed * (total - done) / done if done else None
    eta = "time left unknown" if left is None else f"about {_duration(left)} left"
    return f"{label}: {done:,} of {total:,} distinct sequences ({done / max(total, 1):.0%}), {rate:,.0f} tokens/s, {eta}"


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def embedding_assets(
    partitions_def: dg.MultiPartitionsDefinition,
    settings: Settings,
    *,
    prefix: str = "",
    pairs: str = "translated_proteins",
    group_name: str = "embeddings",
    of_what: str = "kept frame",
) -> list[dg.AssetsDefinition]:
    """The DNABERT-S tokens and the DNABERT-S and ESM-2 assets over `pairs` (`<prefix>dnabert_tokens`,
    `<prefix>dnabert_embeddings`, ...)."""
    return [
        tokens_asset(
            partitions_def,
            f"{prefix}dnabert_tokens",
            column="nucleotide",
            code_version=dnabert_version(settings.dnabert_model),
            pairs=pairs,
            group_name=group_name,
            description=(
                f"DNABERT-S token ids of each distinct nucleotide string of the {of_what}s (nucleotide, "
                "token_ids with [CLS] and [SEP]), in order of first occurrence: tokenized on the CPU, "
                "so that the GPU step does not."
            ),
        ),
        embedding_asset(
            partitions_def,
            f"{prefix}dnabert_embeddings",
            column="nucleotide",
            source="dnabert",
            embedder=dnabert_embedder,
            code_version=dnabert_version(settings.dnabert_model),
            pairs=pairs,
            tokens=f"{prefix}dnabert_tokens",
            group_name=group_name,
            description=(
                f"DNABERT-S embedding of each {of_what}'s nucleotide string: the mean of the last hidden "
                "layer over all tokens, 768 floats per pair (GPU step)."
            ),
        ),
        embedding_asset(
            partitions_def,
            f"{prefix}esm2_embeddings",
            column="protein",
            source="esm2",
            embedder=esm2_embedder,
            code_version=esm2_version(settings.esm2_model),
            pairs=pairs,
            group_name=group_name,
            description=(
                f"ESM-2 embedding of each {of_what}'s protein: the mean of the last layer over the residues, "
                "2560 floats per pair for ESM-2 3B (GPU step)."
            ),
        ),
    ]
