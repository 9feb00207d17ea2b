"""Training sets: which GenBank files make up each, with their class and group.

A set lives in the registry directory as `_training/<set>.json`; the Dagster layer mirrors each
set and chunk length as a dynamic partition `<set>-<chunk length>` (e.g. `refseq-300`). Files are
registered by path and sha256 and checked again when they are read.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from virnucpro_assets.errors import ConfigurationError, InputFormatError
from virnucpro_assets.sequences.chunking import SUPPORTED_CHUNK_LENGTHS
from virnucpro_assets.storage.checksums import sha256_file
from virnucpro_assets.storage.store import atomic_path, check_name
from virnucpro_assets.training.genbank import read_genbank

LABELS = {"viral": 1, "other": 0}
_GENBANK_SUFFIXES = re.compile(r"(\.(gbff|gbk|gb|genbank))?(\.gz)?$", re.IGNORECASE)


@dataclass(frozen=True)
class GenomeFile:
    name: str
    path: str
    sha256: str
    label: str  # viral | other
    group: str  # for the other class: the kingdom-like group sampled evenly (features_extract.py)
    records: int
    registered_at: str

    @property
    def label_value(self) -> int:
        return LABELS[self.label]


def training_partition(training_set: str, chunk_length: int) -> str:
    return f"{check_name('training set', training_set)}-{chunk_length}"


def parse_training_partition(key: str) -> tuple[str, int]:
    """('refseq', 300) of 'refseq-300'."""
    training_set, _, length = str(key).rpartition("-")
    if not training_set or not length.isdigit() or int(length) not in SUPPORTED_CHUNK_LENGTHS:
        raise ConfigurationError(f"training partition {key!r} is not <set>-300 or <set>-500")
    return training_set, int(length)


class TrainingRegistry:
    def __init__(self, root: Path):
        self.directory = Path(root) / "_training"

    def add(self, training_set: str, path: Path, label: str, group: str | None = None) -> tuple[GenomeFile, bool]:
        """Add a GenBank file to a set (created on first use). Returns (entry, created); the same
        content added again returns the existing entry."""
        check_name("training set", training_set)
        if label not in LABELS:
            raise ConfigurationError(f"label {label!r}: give viral or other")
        path = Path(path).expanduser().absolute()
        if not path.is_file():
            raise InputFormatError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
        records = read_genbank(path)
        checksum = sha256_file(path)
        name = re.sub(r"[^A-Za-z0-9._-]", "_", _GENBANK_SUFFIXES.sub("", path.name)).lstrip(".")[:128] or "genomes"
        self.directory.mkdir(parents=True, exist_ok=True)
        with FileLock(self.directory / ".lock"):
            files = self.files(training_set) if self._file(training_set).exists() else []
            for existing in files:
                if existing.sha256 == checksum:
                    return existing, False
            taken = {f.name for f in files}
            base, number = name, 1
            while name in taken:
                number += 1
                name = f"{base}_{number}"
            entry = GenomeFile(
                name=name,
                path=str(path),
                sha256=checksum,
                label=label,
                group=group or label,
                records=len(records),
                registered_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            with atomic_path(self._file(training_set)) as temporary:
                temporary.write_text(json.dumps([asdict(f) for f in [*files, entry]], indent=2))
        return entry, True

    def files(self, training_set: str) -> list[GenomeFile]:
        file = self._file(training_set)
        if not file.exists():
            raise ConfigurationError(
                f"training set {training_set!r} is not registered in {self.directory}; add GenBank files with "
                "`virnucpro-assets add-training-genomes FILE.gbff --label viral|other --set NAME`"
            )
        try:
            return [GenomeFile(**fields) for fields in json.loads(file.read_text())]
        except (ValueError, TypeError) as error:
            raise ConfigurationError(f"{file}: this training set entry is damaged ({error}); remove it and add the files again") from None

    def source_file(self, entry: GenomeFile) -> Path:
        path = Path(entry.path)
        if not path.is_file() or sha256_file(path) != entry.sha256:
            raise InputFormatError(
                f"{path}: the GenBank file {entry.name!r} of this training set is gone or changed since it was added "
                f"(sha256 {entry.sha256[:12]}…): put it back, or add the new file to a new set"
            )
        return path

    def _file(self, training_set: str) -> Path:
        return self.directory / f"{check_name('training set', training_set)}.json"
