"""Digests of stored files: recorded when a file is written, compared when it is read.

xxh3-128 (xxhash) rather than sha256: it detects corrupt, truncated or swapped files as surely
for this purpose (no adversary chooses the bytes; the store's permissions guard against those who
could) and runs at memory speed, so checking every file on every load costs little next to
reading it. The sample registry keeps sha256 for the user's input files, which cross trust
boundaries.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from pathlib import Path

import xxhash

ALGORITHM = "xxh3_128"
WINDOW = 64 << 20  # a multiple of mmap.ALLOCATIONGRANULARITY


def digest_bytes(data) -> str:
    """The digest of a bytes-like object (bytes, memoryview, a pyarrow Buffer)."""
    return f"{ALGORITHM}:{xxhash.xxh3_128_hexdigest(memoryview(data))}"


def digest_file(path: Path) -> str:
    return f"{ALGORITHM}:{_hash_file(xxhash.xxh3_128(), path)}"


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file: what identifies a user's input or a downloaded model."""
    return _hash_file(hashlib.sha256(), path)


def _hash_file(hasher, path: Path) -> str:
    # The page cache hashed in place through memory-mapped windows: 2-3 times faster than reading
    # it in blocks, and a window at a time, so that the mapped pages never add up in memory.
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        for offset in range(0, size, WINDOW):
            with mmap.mmap(handle.fileno(), min(WINDOW, size - offset), offset=offset, access=mmap.ACCESS_READ) as window:
                hasher.update(window)
    return hasher.hexdigest()
