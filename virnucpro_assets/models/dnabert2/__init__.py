"""DNABERT-2 (the architecture of DNABERT-S) in plain PyTorch, and the embedder VirNucPro uses.

config: the config.json fields. architecture: the nn.Modules. loading: a model directory (local or
from the Hugging Face hub) read into those modules and a tokenizer, running none of its code.
embedder: mean embeddings of nucleotide sequences, batched.
"""

from virnucpro_assets.models.dnabert2.architecture import DnabertModel, alibi_slopes
from virnucpro_assets.models.dnabert2.config import DnabertConfig
from virnucpro_assets.models.dnabert2.embedder import DEFAULT_TOKEN_BUDGET, DnabertEmbedder
from virnucpro_assets.models.dnabert2.loading import (
    DEFAULT_DNABERT_SOURCE,
    load_dnabert_model,
    load_dnabert_tokenizer,
    resolve_dnabert_source,
)

__all__ = [
    "DEFAULT_DNABERT_SOURCE",
    "DEFAULT_TOKEN_BUDGET",
    "DnabertConfig",
    "DnabertEmbedder",
    "DnabertModel",
    "alibi_slopes",
    "load_dnabert_model",
    "load_dnabert_tokenizer",
    "resolve_dnabert_source",
]
