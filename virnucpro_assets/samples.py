"""The sample registry: which file each sample name stands for, and its checksum.

It lives in the store (`<store>/_samples/<name>.json`) so that the sample's data and its provenance
sit together; the Dagster layer mirrors each name as a dynamic partition. Entries are written
atomically under a lock, so concurrent registrations never see half an entry; an entry damaged all
the same (a full disk, a hand edit) is an error naming it whenever its sample is asked for, and is
passed over when other files are registered.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from virnucpro_assets.errors import ConfigurationError, InputFormatError, VirnucproError
from virnucpro_assets.sequences.reads import sniff_format
from virnucpro_assets.storage.checksums import sha256_file
from virnucpro_assets.storage.store import atomic_path, check_name

_READS_SUFFIXES = re.compile(r"(\.(fastq|fq|fasta|fa|fna|fas|ffn|seq|txt))?(\.(gz|bz2|xz|zst))?$", re.IGNORECASE)


class RegistryEntryError(VirnucproError):
    """A sample registry entry that cannot be read: names the entry's file and how to repair it."""


@dataclass(frozen=True)
class Sample:
    name: str
    path: str
    sha256: str
    size: int
    format: str
    registered_at: str


def sample_name_from_path(path: Path) -> str:
    """`reads/Lib 7.fastq.gz` -> `Lib_7`: the file name without reads suffixes, other characters as '_'."""
    stem = _READS_SUFFIXES.sub("", path.name) or path.name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip(".")[:128]
    return name or "sample"


class SampleRegistry:
    def __init__(self, store_root: Path):
        self.directory = Path(store_root) / "_samples"

    def register(self, path: Path, name: str | None = None) -> tuple[Sample, bool]:
        """Register `path` under `name` (derived from the file name if None).

        Returns (sample, created). The same content registered again, under any name or path,
        returns the existing sample; a different file under an existing name is refused.
        """
        path = Path(path).expanduser().absolute()
        reads_format, _ = sniff_format(path)
        name = check_name("sample", name if name is not None else sample_name_from_path(path))
        checksum = sha256_file(path)
        self.directory.mkdir(parents=True, exist_ok=True)
        with FileLock(self.directory / ".lock"):
            current = self.find(name)
            if current is not None and current.sha256 != checksum:
                raise ConfigurationError(
                    f"sample {name!r} is already registered for {current.path} (sha256 {current.sha256[:12]}…), "
                    f"which differs from {path} (sha256 {checksum[:12]}…); choose another name with --name"
                )
            same_content = current or next((s for s in self.all() if s.sha256 == checksum), None)
            if same_content is not None:
                return same_content, False
            sample = Sample(
                name=name,
                path=str(path),
                sha256=checksum,
                size=path.stat().st_size,
                format=reads_format,
                registered_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            with atomic_path(self._file(name)) as temporary:
                temporary.write_text(json.dumps(asdict(sample), indent=2))
            return sample, True

    def find(self, name: str) -> Sample | None:
        file = self._file(name)
        return _read_entry(file) if file.exists() else None

    def get(self, name: str) -> Sample:
        sample = self.find(name)
        if sample is None:
            raise ConfigurationError(
                f"sample {name!r} is not registered in {self.directory}; register it with `virnucpro-assets add-sample PATH`"
            )
        return sample

    def has_entry(self, name: str) -> bool:
        """Whether sample `name` has an entry, readable or damaged."""
        return self._file(name).exists()

    def remove(self, name: str) -> bool:
        """Delete the entry of sample `name`, damaged or not. Returns whether there was one."""
        file = self._file(name)
        if not self.directory.is_dir():
            return False
        with FileLock(self.directory / ".lock"):
            if not file.exists():
                return False
            file.unlink()
            return True

    def all(self) -> list[Sample]:
        """Every readable entry; a damaged one is left out here (asking for its sample names it)."""
        samples = []
        for file in sorted(self.directory.glob("*.json")):
            try:
                samples.append(_read_entry(file))
            except RegistryEntryError:
                continue
        return samples

    def source_file(self, sample: Sample) -> Path:
        """The sample's file, after a cheap check that it is there with its registered size. Its
        content is checked against the registered sha256 by the pass that reads it
        (`read_batches(..., expected_sha256=sample.sha256, sample=sample.name)`)."""
        path = Path(sample.path)
        if not path.is_file():
            raise InputFormatError(f"{path}: the file of sample {sample.name!r} is gone (registered {sample.registered_at})")
        size = path.stat().st_size
        if size != sample.size:
            raise InputFormatError(
                f"{path}: changed since it was registered as sample {sample.name!r} ({sample.size:,} bytes then, "
                f"{size:,} now): add it again as a new sample with `virnucpro-assets add-sample {path} --name NEW_NAME`, "
                "or put the registered content back"
            )
        return path

    def _file(self, name: str) -> Path:
        return self.directory / f"{check_name('sample', name)}.json"


def _read_entry(file: Path) -> Sample:
    try:
        fields = json.loads(file.read_bytes())
        sample = Sample(**fields)
    except (ValueError, TypeError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        problem = f"not valid JSON ({error})" if isinstance(error, ValueError) else "not a sample entry"
        raise RegistryEntryError(
            f"{file}: this sample registry entry is damaged ({problem}; cut short by a full disk or edited by hand?): "
            f"remove it and add the sample's file again with `virnucpro-assets add-sample PATH --name {file.stem}`"
        ) from None
    if sample.name != file.stem or not isinstance(sample.sha256, str):
        raise RegistryEntryError(
            f"{file}: this sample registry entry does not describe sample {file.stem!r}: remove it and add "
            f"the sample's file again with `virnucpro-assets add-sample PATH --name {file.stem}`"
        )
    return sample
