"""GenBank genomes with their annotated CDS translations, read with Biopython (plain or gzipped)."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from Bio import SeqIO
from Bio.Seq import Seq
from Bio.SeqFeature import FeatureLocation, SeqFeature
from Bio.SeqRecord import SeqRecord

from virnucpro_assets.errors import InputFormatError


@dataclass(frozen=True)
class GenomeRecord:
    """One GenBank record: its id (accession.version), its sequence as written, and the
    `/translation` of each of its CDS features (the original's reference proteins)."""

    record_id: str
    sequence: str
    cds_proteins: tuple[str, ...]


def _open(path: Path, mode: str = "rt"):
    return gzip.open(path, mode) if path.suffix == ".gz" else open(path, mode)


def read_genbank(path: str | Path) -> list[GenomeRecord]:
    """Every record of a GenBank flat file (.gb/.gbk/.gbff, optionally .gz). A CDS without a
    `/translation` contributes nothing (the original adds an empty string, which matches only the
    empty protein, and empty proteins are never kept). A file that holds no record, or a record
    without sequence, is an error naming the file and the record."""
    path = Path(path)
    try:
        with _open(path) as handle:
            records = list(_records(path, SeqIO.parse(handle, "genbank")))
    except (ValueError, OSError, EOFError) as error:
        raise InputFormatError(f"{path}: not a readable GenBank file: {error}") from error
    if not records:
        raise InputFormatError(f"{path}: no GenBank record found (a GenBank flat file starts with a LOCUS line)")
    return records


def _records(path: Path, parsed: Iterable[SeqRecord]) -> Iterator[GenomeRecord]:
    for number, record in enumerate(parsed, start=1):
        try:
            sequence = str(record.seq)
        except Exception as error:  # Biopython's UndefinedSequenceError: a record without ORIGIN
            raise InputFormatError(f"{path}: record {number} ({record.id}) has no sequence (no ORIGIN section): {error}") from None
        if not sequence:
            raise InputFormatError(f"{path}: record {number} ({record.id}) has an empty sequence")
        proteins = tuple(
            protein
            for feature in record.features
            if feature.type == "CDS"
            for protein in feature.qualifiers.get("translation", [""])[:1]
            if protein
        )
        yield GenomeRecord(record.id, sequence, proteins)


@dataclass(frozen=True)
class CdsFeature:
    """A CDS to write into a GenBank record: [start, end) on the forward strand, strand +1 or -1."""

    start: int
    end: int
    strand: int
    translation: str


def write_genbank(records: Iterable[tuple[str, str, list[CdsFeature], str]], path: str | Path) -> None:
    """Write (id, sequence, CDS features, description) records as GenBank (gzipped if `path`
    ends in .gz): for the demo and the tests, which build their own annotated genomes."""
    path = Path(path)
    built = []
    for record_id, sequence, features, description in records:
        record = SeqRecord(Seq(sequence), id=record_id, name=record_id[:16], description=description)
        record.annotations["molecule_type"] = "DNA"
        record.features = [
            SeqFeature(FeatureLocation(f.start, f.end, strand=f.strand), type="CDS", qualifiers={"translation": [f.translation]})
            for f in features
        ]
        built.append(record)
    with _open(path, "wt") as handle:
        SeqIO.write(built, handle, "genbank")
