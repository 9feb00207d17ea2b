"""ESM-2 protein embeddings.

loading: a fair-esm model name or checkpoint file read safely into `FastEsm2`. architecture:
`FastEsm2`, ESM-2's forward pass for embeddings, tested against fair-esm's own module. embedder:
mean embeddings of proteins, batched. The names below are imported when first used, so that a
checkpoint's place can be looked up without importing torch (the pipeline's CPU-only processes).
"""

from virnucpro_assets.models.lazy_exports import lazy_exports

_MODULE_OF = {
    "DEFAULT_MODEL": "loading",
    "DEFAULT_TOKEN_BUDGET": "embedder",
    "Esm2Embedder": "embedder",
    "FastEsm2": "architecture",
    "default_dtype": "embedder",
    "hub_checkpoint_path": "loading",
    "load_fast_esm2": "loading",
}
__all__ = sorted(_MODULE_OF)
__getattr__ = lazy_exports(__name__, _MODULE_OF)
