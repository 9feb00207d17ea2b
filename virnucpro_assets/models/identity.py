"""What names a model for provenance and staleness: its name plus a hash of its weights."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    content_hash: str  # sha256 of the weight files, hex

    @property
    def version(self) -> str:
        """Short string fit for a Dagster code version: changes whenever the weights change."""
        return f"{self.name}@{self.content_hash[:16]}"


def hash_files(paths: list[Path]) -> str:
    """sha256 over the given files' bytes, in the given order.

    Hashing a 5.7 GB checkpoint takes many seconds, and every GPU step loads its model, so results
    are remembered in a small cache keyed by path, size and modification time."""
    key = ";".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in map(Path, paths))
    cache = _hash_cache_file()
    known = _read_cache(cache)
    if key in known:
        return known[key]
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{cache}.lock"):
            entries = _read_cache(cache)
            entries[key] = digest.hexdigest()
            temporary = cache.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(entries))
            os.replace(temporary, cache)
    except OSError:  # a read-only home only costs the re-hash next time
        pass
    return digest.hexdigest()


def _hash_cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "virnucpro-assets" / "file-hashes.json"


def _read_cache(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def fingerprint(source: str, candidates: list[Path]) -> str:
    """A cheap stand-in for the content hash, fit for a code version computed at every code load:
    the source plus size and modification time of the first candidate path that exists (a file, or
    a directory's files). Replacing the weights changes it; the full sha256 is in the metadata."""
    for candidate in candidates:
        files = sorted(p for p in candidate.rglob("*") if p.is_file()) if candidate.is_dir() else [candidate]
        if candidate.exists():
            stamp = hashlib.sha256()
            for file in files:
                status = file.stat()
                stamp.update(f"{file.name}:{status.st_size}:{status.st_mtime_ns};".encode())
            return f"{source}@{stamp.hexdigest()[:12]}"
    return source
