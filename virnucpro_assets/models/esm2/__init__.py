"""ESM-2 protein embeddings.

loading: a fair-esm model name or checkpoint file read safely into `FastEsm2`. architecture:
`FastEsm2`, ESM-2's forward pass for embeddings, tested against fair-esm's own module. embedder:
mean embeddings of proteins, batched.
"""

from virnucpro_assets.models.esm2.architecture import FastEsm2
from virnucpro_assets.models.esm2.embedder import DEFAULT_TOKEN_BUDGET, Esm2Embedder, default_dtype
from virnucpro_assets.models.esm2.loading import DEFAULT_MODEL, hub_checkpoint_path, load_fast_esm2

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TOKEN_BUDGET",
    "Esm2Embedder",
    "FastEsm2",
    "default_dtype",
    "hub_checkpoint_path",
    "load_fast_esm2",
]
