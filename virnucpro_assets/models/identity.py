"""What names a model for provenance and staleness: its name plus a hash of its weights."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    content_hash: str  # sha256 of the weight files, hex

    @property
    def version(self) -> str:
        """Short string fit for a Dagster code version: changes whenever the weights change."""
        return f"{self.name}@{self.content_hash[:16]}"


def hash_files(paths: list[Path]) -> str:
    """sha256 over the given files' bytes, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
