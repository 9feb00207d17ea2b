"""DNABERT-2 (the architecture of DNABERT-S) in plain PyTorch, and the embedder VirNucPro uses.

config: the config.json fields. architecture: the nn.Modules. loading: a model directory (local or
from the Hugging Face hub) read into those modules and a tokenizer, running none of its code.
tokens: token ids of nucleotide strings. embedder: mean embeddings of nucleotide sequences, batched.
The names below are imported when first used, so that the tokenizer and the model's files can be
used without importing torch (the pipeline's CPU-only processes).
"""

from virnucpro_assets.models.lazy_exports import lazy_exports

_MODULE_OF = {
    "DnabertModel": "architecture",
    "alibi_slopes": "architecture",
    "DnabertConfig": "config",
    "DEFAULT_TOKEN_BUDGET": "embedder",
    "DnabertEmbedder": "embedder",
    "DEFAULT_DNABERT_SOURCE": "loading",
    "load_dnabert_model": "loading",
    "load_dnabert_tokenizer": "loading",
    "resolve_dnabert_source": "loading",
}
__all__ = sorted(_MODULE_OF)
__getattr__ = lazy_exports(__name__, _MODULE_OF)
