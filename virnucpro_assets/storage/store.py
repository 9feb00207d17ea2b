"""The store: one root directory, hive-style paths, files that appear only when complete.

Layout: `<root>/<asset>/sample=<sample>/shard=<shard>.<ext>` for shard assets and
`<root>/<asset>/sample=<sample>/<file>` for sample assets, so that
`polars.scan_parquet("<root>/predictions/**/*.parquet", hive_partitioning=True)` reads everything.
Every file is written under a hidden temporary name in its final directory and renamed into place
when complete; a killed writer leaves at most a `.*.tmp` file that no reader's glob matches.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from virnucpro_assets.errors import ConfigurationError, MissingInputError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def check_name(kind: str, name: str) -> str:
    """A sample or shard name that can only ever name one directory inside the store."""
    if not NAME_PATTERN.fullmatch(name) or name.startswith("."):
        raise ConfigurationError(
            f"{kind} name {name!r} is not allowed: use 1-128 of the characters A-Z a-z 0-9 . _ - "
            "and do not start with a dot"
        )
    return name


class Store:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()

    def sample_dir(self, asset: str, sample: str) -> Path:
        return self._inside(self.root / check_name("asset", asset) / f"sample={check_name('sample', sample)}")

    def shard_path(self, asset: str, sample: str, shard: str, ext: str) -> Path:
        return self.sample_dir(asset, sample) / f"shard={check_name('shard', shard)}.{ext}"

    def upstream(self, asset: str, sample: str, shard: str, ext: str) -> Path:
        """The shard file a step reads, or an error saying which asset to materialize first."""
        path = self.shard_path(asset, sample, shard, ext)
        if not path.exists():
            raise MissingInputError(
                f"{path} does not exist: materialize {asset} for sample {sample!r} (shard {shard}) first"
            )
        return path

    def shard_paths(self, asset: str, sample: str, ext: str) -> list[Path]:
        """The sample's existing shard files of an asset, in shard order."""
        directory = self.sample_dir(asset, sample)
        return sorted(directory.glob(f"shard=*.{ext}")) if directory.is_dir() else []

    def _inside(self, path: Path) -> Path:
        # check_name already forbids separators and '..'; this guards against a symlinked escape too.
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise ConfigurationError(f"{path} resolves to {resolved}, outside the store {self.root}")
        return path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, on failure remove it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield temporary
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
