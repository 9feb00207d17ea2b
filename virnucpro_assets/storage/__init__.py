"""The store's layout and file formats."""

from virnucpro_assets.storage.store import Store, atomic_path, check_name, is_url
from virnucpro_assets.storage.tables import (
    EMBEDDING_EXTENSION,
    TABLE_EXTENSION,
    EmbeddingTable,
    load_embeddings,
    read_table,
    verified_buffer,
    write_embeddings,
    write_table,
)

__all__ = [
    "EMBEDDING_EXTENSION",
    "TABLE_EXTENSION",
    "EmbeddingTable",
    "Store",
    "atomic_path",
    "check_name",
    "is_url",
    "load_embeddings",
    "read_table",
    "verified_buffer",
    "write_embeddings",
    "write_table",
]
