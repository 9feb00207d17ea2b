"""The store: one root (a local directory or an fsspec URL), hive-style paths, files that appear
only when complete.

Layout: `<root>/<asset>/sample=<sample>/shard=<shard>.<ext>` for shard assets and
`<root>/<asset>/sample=<sample>/<file>` for sample assets, so that
`polars.scan_parquet("<root>/predictions/**/*.parquet", hive_partitioning=True)` reads everything.

The root is a local or shared file-system path, or any fsspec URL (`s3://bucket/prefix` with the
`s3` extra installed; credentials and endpoint come from the usual environment, e.g.
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL). Every file is first written whole
on local disk: on a file system it is then renamed into place (under a hidden temporary name
until then), on an object store it is sent as one object (a single or multipart put, which the
store makes visible only once complete). A killed writer leaves at most a hidden `.*.tmp` entry
that no reader's glob matches; the next write of the same partition removes it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from upath import UPath

from virnucpro_assets.errors import ConfigurationError
from virnucpro_assets.processes import process_alive
from virnucpro_assets.storage.checksums import digest_file

NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
# Hidden names of unfinished writes: .<final name>.<host>-<pid>-<random>.tmp
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)-[0-9a-f]{8}\.(tmp|old)$")
WITHDRAWN_SUFFIX = ".failed-check"


def check_name(kind: str, name: str) -> str:
    """A sample or shard name that can only ever name one directory inside the store."""
    if not NAME_PATTERN.fullmatch(name) or name.startswith("."):
        raise ConfigurationError(
            f"{kind} name {name!r} is not allowed: use 1-128 of the characters A-Z a-z 0-9 . _ - and do not start with a dot"
        )
    return name


def is_url(root: str | os.PathLike) -> bool:
    return "://" in str(root)


class Store:
    """Paths of the store and the two ways files get there: `publish_file` and `publish_directory`."""

    def __init__(self, root: str | os.PathLike):
        if is_url(root):
            self.root = UPath(str(root).rstrip("/"))
        else:
            self.root = UPath(Path(root).expanduser().resolve())
        self.local = not is_url(root)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # --- layout -----------------------------------------------------------------------------
    def sample_dir(self, asset: str, sample: str) -> UPath:
        path = self.root / check_name("asset", asset) / f"sample={check_name('sample', sample)}"
        if self.local:  # check_name forbids separators and '..'; this guards against a symlinked escape too
            resolved = Path(path).resolve()
            if not resolved.is_relative_to(Path(self.root)):
                raise ConfigurationError(f"{path} resolves to {resolved}, outside the store {self.root}")
        return path

    def shard_path(self, asset: str, sample: str, shard: str, ext: str) -> UPath:
        return self.sample_dir(asset, sample) / f"shard={check_name('shard', shard)}.{ext}"

    def registry_dir(self) -> Path:
        """The sample registry's directory (`<store>/_samples`; the registry needs a file system)."""
        if not self.local:
            raise ConfigurationError(f"the sample registry needs a file-system store, not {self.root}")
        return Path(self.root) / "_samples"

    # --- writing ----------------------------------------------------------------------------
    def publish_file(self, path: UPath, write: Callable[[Path], None]) -> str:
        """Call `write(local_path)` to write the file, then put it at `path` atomically.
        Returns the file's digest (see virnucpro_assets.storage.checksums)."""
        self.remove_stale_temporaries(path.parent, path.name)
        with self._local_temporary(path) as temporary:
            write(temporary)
            digest = digest_file(temporary)
            if self.local:
                fsync_file(temporary)
                os.replace(temporary, path)
            else:
                path.fs.put_file(str(temporary), path.path)
        return digest

    def publish_directory(self, path: UPath, write: Callable[[Path], None]) -> dict[str, str]:
        """Call `write(local_directory)` to fill a directory, then make it the one at `path`,
        replacing what was there whole. Returns each file's digest by name.

        On a file system the new directory is renamed into place, so its files appear together;
        an object store has no directories, so there each file is put on its own, after the
        objects of the previous version that the new one does not have are removed."""
        parent = path.parent
        self.remove_stale_temporaries(parent, path.name)
        with self._local_temporary(path, directory=True) as temporary:
            write(temporary)
            digests = {file.name: digest_file(file) for file in sorted(temporary.iterdir())}
            if self.local:
                for file in temporary.iterdir():
                    fsync_file(file)
                old = Path(parent) / _temporary_name(path.name, "old")
                if Path(path).exists():
                    os.replace(path, old)
                os.replace(temporary, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                for stale in set(self.list_names(path)) - set(digests):
                    (path / stale).unlink()
                for name in digests:
                    path.fs.put_file(str(temporary / name), (path / name).path)
        return digests

    def withdraw(self, directory: UPath, name: str) -> None:
        """Move a published file out of readers' sight (a hidden name), keeping it for inspection."""
        path = directory / name
        if path.exists():
            hidden = directory / f".{name}{WITHDRAWN_SUFFIX}"
            if self.local:
                os.replace(path, hidden)
            else:
                path.fs.mv(path.path, hidden.path)

    def remove_sample(self, asset: str, sample: str) -> UPath | None:
        """Delete everything the store holds of `sample` for `asset` (its `sample=` directory with
        any withdrawn or unfinished files in it). Returns the directory, or None if there was none."""
        directory = self.sample_dir(asset, sample)
        if self.local:
            self.remove_stale_temporaries(directory.parent, directory.name)
            if not Path(directory).exists():
                return None
            shutil.rmtree(directory)
        else:
            if not directory.fs.exists(directory.path):
                return None
            directory.fs.rm(directory.path, recursive=True)
        return directory

    def sample_assets(self, sample: str) -> list[str]:
        """The assets that hold files of `sample` in this store."""
        try:
            assets = sorted(entry.name for entry in self.root.iterdir() if not entry.name.startswith((".", "_")))
        except FileNotFoundError:
            return []
        return [asset for asset in assets if NAME_PATTERN.fullmatch(asset) and self.sample_dir(asset, sample).exists()]

    def list_names(self, directory: UPath) -> list[str]:
        """Names of the visible entries of a directory (none if it does not exist)."""
        try:
            return sorted(entry.name for entry in directory.iterdir() if not entry.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def remove_stale_temporaries(self, directory: UPath, name: str) -> None:
        """Remove what killed writers of `name` on this host left in `directory`."""
        if self.local:
            remove_dead_writers_temporaries(Path(directory), name)

    @contextmanager
    def _local_temporary(self, path: UPath, directory: bool = False) -> Iterator[Path]:
        """A hidden temporary file or directory on local disk: beside `path` on a file system (so
        that a rename publishes it), in the system's temporary directory for an object store."""
        if self.local:
            Path(path.parent).mkdir(parents=True, exist_ok=True)
            temporary = Path(path.parent) / _temporary_name(path.name, "tmp")
        else:
            temporary = Path(tempfile.mkdtemp(prefix="virnucpro-")) / path.name
        try:
            if directory:
                temporary.mkdir()
            yield temporary
        finally:
            if temporary.is_dir():
                shutil.rmtree(temporary, ignore_errors=True)
            else:
                temporary.unlink(missing_ok=True)
            if not self.local:
                shutil.rmtree(temporary.parent, ignore_errors=True)

    # --- reading ----------------------------------------------------------------------------
    @contextmanager
    def readable(self, path: UPath) -> Iterator[Path | bytes]:
        """A local path of the file (file systems), or its bytes (object stores)."""
        if self.local:
            if not Path(path).is_file():
                raise FileNotFoundError(str(path))
            yield Path(path)
        else:
            yield path.read_bytes()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, on failure remove it.
    For files outside the store's assets (the sample registry, the demo's inputs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        yield temporary
        fsync_file(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def temporary_path(path: Path) -> Path:
    """A hidden temporary name beside `path` for a file that will be renamed to it (see atomic_path);
    remove_dead_writers_temporaries knows it by its host and pid."""
    return path.with_name(_temporary_name(path.name, "tmp"))


def remove_dead_writers_temporaries(directory: Path, name: str | None = None) -> None:
    """Remove the temporaries (of `name`, or of any name) that writers on this host left in
    `directory` when they were killed."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match and name in (None, match["name"]) and match["host"] == _HOST and not process_alive(int(match["pid"])):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink(missing_ok=True)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _temporary_name(name: str, kind: str) -> str:
    return f".{name}.{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.{kind}"
