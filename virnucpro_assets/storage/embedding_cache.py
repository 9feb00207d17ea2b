"""Vectors already computed, found again across samples: a content-addressed embedding cache in the store.

An entry's key is (the model, its precision, the sequence): the model by a hash of everything that
decides its vectors (ESM-2: its checkpoint; DNABERT-S: weights, config.json and tokenizer.json),
the precision as the dtype it ran in (float32, float16, bfloat16), the sequence by its sha256.
Vectors made on the CPU and on a GPU in the same dtype share entries: they differ in the last
float bits, as vectors of one sequence in two batch compositions do.

Layout, in a file-system store:

    <store>/_embedding_cache/
        .lock                                   taken by writers (flock; the kernel frees it on kill -9)
        v1/<model hash>-<precision>/            one namespace per model and precision
            <random hex>.arrow                  a segment: the entries one step added
            .<random hex>.arrow.<host>-<pid>-<random>.tmp   a segment being written

A segment is an Arrow IPC file of one record batch, in the order its writer gave: `key` (the
sequence's sha256, 32 bytes), `check` (xxh3-64 of the key followed by the vector's bytes) and
`embedding` (float32 × width). Its keys are a small part of the file (40 bytes an entry with the
checks, against 3 KB for a DNABERT-S vector and 10 KB for ESM-2's), so a lookup reads every
segment's keys, searches them against the sorted keys asked for, and reads the vectors of the hits
only, each straight into its place. One segment per step, rather than one file per sequence: a
shard's hundreds of thousands of sequences are one file written and one opened
(`benchmarks/embedding_cache.py` measures both).

Atomic: a segment is written whole under a hidden temporary name, synced, and renamed into place; it
is never changed afterwards, only deleted whole. A writer killed at any point leaves at most its
temporary, which no reader looks at and the next writer on the host removes. Readers take no lock.

Concurrent writers: the keys a step adds are the misses of its own lookup; under the lock, just
before publishing, the writer looks again in the segments published since its lookup and leaves
out what another writer added in between. Two steps adding the same sequence both succeed, and
the cache holds one valid entry of it.

Verified: every vector read is checked against its entry's `check` (and its key compared in full);
an entry that fails is a miss, recomputed by the caller and added again, and counted in
`CacheStats.corrupt`. A segment that is not a readable table of the namespace's width is skipped,
and deleted by the next writer.

Bounded: segments of all namespaces together stay within `max_bytes`. Each lookup that finds
entries in a segment sets the segment's modification time to now; before publishing, a writer
deletes the least recently used segments until the new one fits (least recently used by segment:
a segment goes whole, when no step has found anything in it for longest). A step's entries that
alone exceed the bound are cut to fit.

A cache is an optimisation: a lookup or an addition that fails on the file system (a full disk,
permissions) is logged and recorded in `CacheStats.errors`, and the step goes on without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import xxhash
from filelock import FileLock

from virnucpro_assets.storage.store import check_name, fsync_file, remove_dead_writers_temporaries, temporary_path

logger = logging.getLogger(__name__)

CACHE_DIRECTORY = "_embedding_cache"
# The segment format and the way vectors are computed: bump it when either changes beyond rounding.
FORMAT = "v1"
SEGMENT_SUFFIX = ".arrow"
KEY_BYTES = 32  # sha256
_SEGMENT_OVERHEAD = 4096  # bytes of an Arrow IPC file besides its columns (schema, footer, alignment)


@dataclass
class CacheStats:
    """What one cache object did: counts of distinct sequences and seconds spent."""

    hits: int = 0
    misses: int = 0
    corrupt: int = 0  # entries found whose vector failed its check: recomputed
    added: int = 0
    evicted_segments: int = 0
    lookup_s: float = 0.0
    add_s: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class CachedVectors:
    """A lookup's result for n sequences: their keys, the vectors found, which were found, and the
    segments looked at (an addition after it looks again only in newer ones)."""

    keys: np.ndarray  # uint8 [n, 32]
    vectors: np.ndarray  # float32 [n, width]; zeros where not found
    hit: np.ndarray  # bool [n]
    seen: frozenset[str]

    @property
    def misses(self) -> np.ndarray:
        """Indices of the sequences not found, in order."""
        return np.flatnonzero(~self.hit)


@dataclass(frozen=True)
class _Layout:
    """Where a segment's three columns lie in its file. They are read with pread rather than
    through the memory map: a hit's vector is copied once, straight into its place, and a 2-core VM
    read mapped pages 10-15 times slower than it read() them."""

    entries: int
    width: int
    keys_at: int
    checks_at: int
    vectors_at: int

    def keys(self, handle) -> np.ndarray:
        return _pread(handle, self.keys_at, self.entries * KEY_BYTES, np.uint8).reshape(-1, KEY_BYTES)

    def checks(self, handle) -> np.ndarray:
        return _pread(handle, self.checks_at, self.entries * 8, np.uint64)

    def read_vectors(self, handle, rows: np.ndarray, into: np.ndarray, at: np.ndarray | None) -> np.ndarray:
        """Read the vectors of `rows` into `into[at[i]]` (or `into[i]`); which were read whole."""
        size = 4 * self.width
        at = range(len(rows)) if at is None else at
        return np.fromiter(
            (os.preadv(handle.fileno(), [into[place]], self.vectors_at + int(row) * size) == size for row, place in zip(rows, at)),
            bool,
            count=len(rows),
        )


def _pread(handle, offset: int, size: int, dtype) -> np.ndarray:
    data = np.empty(size, np.uint8)
    if os.preadv(handle.fileno(), [data], offset) != size:
        raise OSError(f"{handle.name}: fewer than {size} bytes at {offset}, which its metadata promise")
    return data.view(dtype)


class EmbeddingCache:
    """The entries of one model in one precision, in the cache at `root` (see the module's docstring)."""

    def __init__(self, root: Path, model: str, precision: str, width: int, max_bytes: int):
        self.root = Path(root)
        self.namespace = self.root / FORMAT / check_name("model", f"{model}-{precision}")
        self.width = width
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._unreadable: set[Path] = set()  # segments found unreadable, deleted by the next addition
        self._schema = pa.schema([("key", pa.binary(KEY_BYTES)), ("check", pa.uint64()), ("embedding", pa.list_(pa.float32(), width))])

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.namespace)!r})"

    # --- lookup -----------------------------------------------------------------------------
    def lookup(self, sequences: Sequence[str]) -> CachedVectors:
        """The cached vectors of `sequences` (distinct), each checked; the others are misses."""
        started = time.perf_counter()
        keys = sequence_keys(sequences)
        vectors = np.zeros((len(keys), self.width), np.float32)
        try:
            segments = self._segments()
            hit = self._find(keys, segments, vectors)
        except OSError as error:
            self._failed("look up vectors in", error)
            segments, hit = [], np.zeros(len(keys), bool)
        self.stats.hits += int(hit.sum())
        self.stats.misses += len(keys) - int(hit.sum())
        self.stats.lookup_s += time.perf_counter() - started
        return CachedVectors(keys, vectors, hit, frozenset(path.name for path in segments))

    def _find(self, keys: np.ndarray, segments: list[Path], vectors: np.ndarray | None = None) -> np.ndarray:
        """Which of `keys` (distinct) have a valid entry in `segments`; their vectors go into
        `vectors`, when given."""
        hit = np.zeros(len(keys), bool)
        if not len(keys):
            return hit
        prefixes = _prefixes(keys)
        order = np.argsort(prefixes, kind="stable")
        sorted_prefixes = prefixes[order]
        for path in segments:
            try:
                with open(path, "rb") as handle:
                    found = self._find_in(path, handle, keys, order, sorted_prefixes, hit, vectors)
            except FileNotFoundError:  # evicted since it was listed
                continue
            hit[found] = True
            if found.size:
                _touch(path)
        return hit

    def _find_in(self, path, handle, keys, order, sorted_prefixes, hit, vectors) -> np.ndarray:
        """The indices of `keys` not yet `hit` that have a valid entry in the segment at `path`
        (open as `handle`); `keys[order]` is sorted by prefix. Their vectors go into `vectors`."""
        layout = self._layout(path)
        if layout is None:
            return np.zeros(0, np.int64)
        segment_keys = layout.keys(handle)
        segment_prefixes = _prefixes(segment_keys)
        # Each entry's place among the keys asked for: one search per entry, O(entries × log keys).
        at = np.minimum(np.searchsorted(sorted_prefixes, segment_prefixes), len(keys) - 1)
        rows = np.flatnonzero(sorted_prefixes[at] == segment_prefixes)
        asked = order[at[rows]]
        same = ~hit[asked] & (segment_keys[rows] == keys[asked]).all(axis=1)
        rows, asked = rows[same], asked[same]
        if not rows.size:
            return asked
        into, places = (vectors, asked) if vectors is not None else (np.empty((len(rows), self.width), np.float32), None)
        valid = layout.read_vectors(handle, rows, into, places) & (entry_checks(keys[asked], into, places) == layout.checks(handle)[rows])
        if not valid.all():
            self.stats.corrupt += int((~valid).sum())
            logger.warning("%s: %d entries fail their check; they are recomputed", path, int((~valid).sum()))
            if vectors is not None:
                vectors[asked[~valid]] = 0
        return asked[valid]

    def _segments(self) -> list[Path]:
        try:
            return sorted(path for path in self.namespace.iterdir() if path.suffix == SEGMENT_SUFFIX and not path.name.startswith("."))
        except FileNotFoundError:
            return []

    def _layout(self, path: Path) -> _Layout | None:
        """Where a segment's columns lie in its file (read from its Arrow IPC metadata through a
        memory map, whose data pages are not touched); None, logged, if it is not a segment of this
        namespace."""
        try:
            with pa.memory_map(str(path)) as mapped:
                reader = pa.ipc.open_file(mapped)
                if reader.num_record_batches != 1 or not reader.schema.equals(self._schema):
                    raise ValueError(f"holds {reader.num_record_batches} record batches of {reader.schema}, not one of {self._schema}")
                batch = reader.get_batch(0)
                mapped.seek(0)
                start = mapped.read_buffer(1).address
                keys, checks, vectors = batch.column(0), batch.column(1), batch.column(2).flatten()
                layout = _Layout(
                    entries=batch.num_rows,
                    width=self.width,
                    keys_at=keys.buffers()[1].address - start + keys.offset * KEY_BYTES,
                    checks_at=checks.buffers()[1].address - start + checks.offset * 8,
                    vectors_at=vectors.buffers()[1].address - start + vectors.offset * 4,
                )
                if layout.vectors_at + layout.entries * 4 * self.width > mapped.size():
                    raise ValueError(f"its vectors would end past its {mapped.size()} bytes")
        except (pa.ArrowException, ValueError) as error:
            logger.warning("%s: not a readable cache segment, skipped (the next writer deletes it): %s", path, error)
            self._unreadable.add(path)
            return None
        return layout

    # --- adding -----------------------------------------------------------------------------
    def add(self, found: CachedVectors, vectors: np.ndarray) -> int:
        """Add `vectors`, those of `found`'s misses in order, as one segment; returns how many
        entries were added (non-finite vectors, entries another writer added since the lookup and
        those past the size bound are left out)."""
        started = time.perf_counter()
        keys = found.keys[found.misses]
        if len(keys) != len(vectors):
            raise ValueError(f"{len(vectors)} vectors for {len(keys)} misses")
        finite = np.isfinite(vectors).all(axis=1)
        if not finite.all():
            keys, vectors = keys[finite], vectors[finite]
        keys, vectors = keys[: self._capacity()], vectors[: self._capacity()]
        try:
            added = self._publish(keys, vectors, found.seen) if len(keys) else 0
        except OSError as error:
            self._failed("add vectors to", error)
            added = 0
        self.stats.added += added
        self.stats.add_s += time.perf_counter() - started
        return added

    def _capacity(self) -> int:
        """Entries a segment may hold within the size bound."""
        return max((self.max_bytes - _SEGMENT_OVERHEAD) // (KEY_BYTES + 8 + 4 * self.width), 0)

    def _publish(self, keys: np.ndarray, vectors: np.ndarray, seen: frozenset[str]) -> int:
        self.namespace.mkdir(parents=True, exist_ok=True)
        path = self.namespace / f"{uuid.uuid4().hex}{SEGMENT_SUFFIX}"
        temporary = temporary_path(path)
        try:
            self._write(temporary, keys, vectors)
            with FileLock(self.root / ".lock"):
                remove_dead_writers_temporaries(self.namespace)
                present = self._find(keys, [segment for segment in self._segments() if segment.name not in seen])
                while self._unreadable:
                    self._unreadable.pop().unlink(missing_ok=True)
                if present.all():
                    return 0
                if present.any():  # another writer added some of them since the lookup
                    keys, vectors = keys[~present], vectors[~present]
                    self._write(temporary, keys, vectors)
                size = temporary.stat().st_size
                if size > self.max_bytes:
                    return 0
                self._evict(size)
                os.replace(temporary, path)
            return len(keys)
        finally:
            temporary.unlink(missing_ok=True)

    def _write(self, path: Path, keys: np.ndarray, vectors: np.ndarray) -> None:
        keys, vectors = np.ascontiguousarray(keys), np.ascontiguousarray(vectors, dtype=np.float32)
        columns = [
            pa.FixedSizeBinaryArray.from_buffers(pa.binary(KEY_BYTES), len(keys), [None, pa.py_buffer(keys)]),
            pa.array(entry_checks(keys, vectors), pa.uint64()),
            pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), self.width),
        ]
        table = pa.Table.from_arrays(columns, schema=self._schema)
        feather.write_feather(table, path, compression="uncompressed", chunksize=max(len(keys), 1))
        fsync_file(path)

    def _evict(self, incoming: int) -> None:
        """Delete the least recently used segments of the whole cache until `incoming` bytes fit."""
        segments = []
        for path in self.root.glob(f"*/*/*{SEGMENT_SUFFIX}"):
            try:
                status = path.stat()
            except FileNotFoundError:
                continue
            segments.append((status.st_mtime_ns, status.st_size, path))
        total = sum(size for _, size, _ in segments)
        for _, size, path in sorted(segments):
            if total + incoming <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            self.stats.evicted_segments += 1

    def _failed(self, action: str, error: OSError) -> None:
        message = f"could not {action} the embedding cache {self.namespace}: {error}; going on without it"
        logger.warning(message)
        self.stats.errors.append(message)


def sequence_keys(sequences: Sequence[str]) -> np.ndarray:
    """The sha256 of each sequence, uint8 [n, 32]."""
    digests = b"".join(hashlib.sha256(sequence.encode()).digest() for sequence in sequences)
    return np.frombuffer(digests, np.uint8).reshape(-1, KEY_BYTES)


def entry_checks(keys: np.ndarray, vectors: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """xxh3-64 of each key followed by the bytes of its vector: `vectors[rows[i]]` for key i (rows
    of a C-contiguous matrix, hashed where they lie), or `vectors[i]` without `rows`."""
    rows = range(len(keys)) if rows is None else rows
    return np.fromiter((_check(key, vectors[row]) for key, row in zip(keys, rows)), np.uint64, count=len(keys))


def _check(key: np.ndarray, vector: np.ndarray) -> int:
    hasher = xxhash.xxh3_64(key)
    hasher.update(vector)
    return hasher.intdigest()


def _prefixes(keys: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each key as an unsigned integer, ordered as the bytes are."""
    return np.ascontiguousarray(keys[:, :8]).view(">u8").ravel().astype(np.uint64)


def _touch(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):  # evicted meanwhile
        os.utime(path)  # most recently used: evicted last
