"""Digests of stored files: recorded when a file is written, compared when it is read.

xxh3-128 (xxhash) rather than sha256: it detects corrupt, truncated or swapped files as surely
for this purpose (no adversary chooses the bytes; the store's permissions guard against those who
could) and runs at memory speed, so checking every file on every load costs little next to
reading it. The sample registry keeps sha256 for the user's input files, which cross trust
boundaries.

A digest (`xxh3_128x64m:<hex>`) is the xxh3-128 of the content's length and of the xxh3-128 of
each 64 MiB window, the windows hashed in parallel (xxhash releases the GIL): a multi-gigabyte
embedding table is checked in a fraction of the time one thread takes, the same digest whatever
the number of threads. Digests recorded before (`xxh3_128:`, one pass over the whole content) are
still verified as they were computed.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import xxhash

ALGORITHM = "xxh3_128x64m"
SINGLE_PASS = "xxh3_128"  # what stores written before the windowed digest recorded
WINDOW = 64 << 20  # a multiple of mmap.ALLOCATIONGRANULARITY


def digest_bytes(data, algorithm: str = ALGORITHM) -> str:
    """The digest of a bytes-like object (bytes, memoryview, a pyarrow Buffer)."""
    view = memoryview(data).cast("B")
    if algorithm == SINGLE_PASS:
        return f"{SINGLE_PASS}:{xxhash.xxh3_128_hexdigest(view)}"
    return _windowed(len(view), lambda offset: xxhash.xxh3_128_digest(view[offset : offset + WINDOW]), algorithm)


def digest_file(path: Path, algorithm: str = ALGORITHM) -> str:
    if algorithm == SINGLE_PASS:
        return f"{SINGLE_PASS}:{_hash_file(xxhash.xxh3_128(), path)}"
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size

        def window(offset: int) -> bytes:
            with _mapped_window(handle, size, offset) as mapped:
                return xxhash.xxh3_128_digest(mapped)

        return _windowed(size, window, algorithm)


def algorithm_of(digest: str) -> str:
    """The algorithm a recorded digest was made with."""
    return digest.partition(":")[0]


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file: what identifies a user's input or a downloaded model."""
    return _hash_file(hashlib.sha256(), path)


def _windowed(size: int, hash_window: Callable[[int], bytes], algorithm: str) -> str:
    if algorithm != ALGORITHM:
        raise ValueError(f"unknown digest algorithm {algorithm!r}")
    offsets = range(0, size, WINDOW)
    threads = min(len(offsets), len(os.sched_getaffinity(0)))
    if threads <= 1:
        parts = [hash_window(offset) for offset in offsets]
    else:
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(hash_window, offsets))
    return f"{ALGORITHM}:{xxhash.xxh3_128_hexdigest(size.to_bytes(8, 'little') + b''.join(parts))}"


def _hash_file(hasher, path: Path) -> str:
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        for offset in range(0, size, WINDOW):
            with _mapped_window(handle, size, offset) as window:
                hasher.update(window)
    return hasher.hexdigest()


def _mapped_window(handle, size: int, offset: int) -> mmap.mmap:
    # The page cache hashed in place through memory-mapped windows: 2-3 times faster than reading
    # it in blocks, and a window at a time, so that the mapped pages never add up in memory.
    return mmap.mmap(handle.fileno(), min(WINDOW, size - offset), offset=offset, access=mmap.ACCESS_READ)
