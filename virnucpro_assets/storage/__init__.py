"""The store's layout and file formats."""

from virnucpro_assets.storage.store import Store, atomic_path, check_name
from virnucpro_assets.storage.tables import (
    EMBEDDING_EXTENSION,
    load_embeddings,
    read_table,
    write_embeddings,
    write_table,
)

__all__ = [
    "EMBEDDING_EXTENSION",
    "Store",
    "atomic_path",
    "check_name",
    "load_embeddings",
    "read_table",
    "write_embeddings",
    "write_table",
]
