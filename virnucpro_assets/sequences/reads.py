"""Reading sequencing reads: FASTA or FASTQ, plain or gzipped, told apart by content.

Every problem with a file is an `InputFormatError` naming the file, the record (number and id)
where it applies, and what is wrong. Reads come out in batches so that files of tens of millions of
reads never have to sit in memory as Python objects.
"""

from __future__ import annotations

import gzip
from array import array
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from Bio.SeqIO.FastaIO import SimpleFastaParser
from Bio.SeqIO.QualityIO import FastqGeneralIterator

from virnucpro_assets.errors import InputFormatError

GZIP_MAGIC = b"\x1f\x8b"
# IUPAC nucleotide codes (U for RNA). N and the ambiguity letters are valid input: the
# translation drops any codon that contains them.
NUCLEOTIDE_LETTERS = frozenset("ACGTURYSWKMBDHVNacgturyswkmbdhvn")
# Letters that occur in proteins but are not nucleotide codes: seeing them means a protein FASTA.
PROTEIN_ONLY_LETTERS = frozenset("EFILPQZXJOefilpqzxjo")
_NOT_NUCLEOTIDE = re.compile(r"[^ACGTURYSWKMBDHVNacgturyswkmbdhvn]")


@dataclass
class ReadBatch:
    ids: list[str]
    sequences: list[str]


@dataclass
class ReadStats:
    """What was seen while reading a file, for materialization metadata."""

    reads: int = 0
    bases: int = 0
    skipped_empty: int = 0
    format: str = ""
    compressed: bool = False
    lengths: array = field(default_factory=lambda: array("I"), repr=False)


def sniff_format(path: Path) -> tuple[str, bool]:
    """Return ("fasta" | "fastq", gzipped) for a reads file, or raise InputFormatError saying why not."""
    if not path.exists():
        raise InputFormatError(f"{path}: no such file")
    if path.is_dir():
        raise InputFormatError(f"{path}: is a directory, not a reads file (give a FASTA or FASTQ file)")
    with open(path, "rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
    with _open_text(path, compressed) as handle:
        head = _read_guarded(path, handle, 64 * 1024)
    if not head.strip():
        raise InputFormatError(f"{path}: the file is empty (no reads)")
    first = head.lstrip()[0]
    if first == ">":
        return "fasta", compressed
    if first == "@":
        return "fastq", compressed
    raise InputFormatError(
        f"{path}: neither FASTA (records start with '>') nor FASTQ (records start with '@'); "
        f"the file starts with {head.lstrip()[:40]!r}"
    )


def read_batches(path: Path, stats: ReadStats, batch_size: int = 100_000) -> Iterator[ReadBatch]:
    """Yield validated reads of `path` in file order, `batch_size` at a time.

    Record ids are the header's first word (the description is dropped, as the original does).
    Empty records are skipped and counted in `stats`; everything else wrong raises InputFormatError.
    Duplicate ids are the caller's to check, since they need all ids at once.
    """
    stats.format, stats.compressed = sniff_format(path)
    parser = SimpleFastaParser if stats.format == "fasta" else FastqGeneralIterator
    batch = ReadBatch([], [])
    record_number = 0
    last_id = ""
    with _open_text(path, stats.compressed) as handle:
        records = parser(_GuardedText(path, handle))
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except ValueError as error:
                after = f" (the one after read {last_id!r})" if last_id else ""
                raise InputFormatError(f"{path}: {stats.format.upper()} record {record_number + 1}{after}: {error}") from None
            record_number += 1
            title, sequence = record[0], record[1]
            read_id = last_id = title.split(None, 1)[0] if title.strip() else ""
            if not read_id:
                raise InputFormatError(f"{path}: record {record_number} has a header with no read id")
            if not sequence:
                stats.skipped_empty += 1
                continue
            batch.ids.append(read_id)
            batch.sequences.append(sequence)
            if len(batch.ids) >= batch_size:
                _check_letters(path, batch, record_number)
                _count(stats, batch)
                yield batch
                batch = ReadBatch([], [])
    if batch.ids:
        _check_letters(path, batch, record_number)
        _count(stats, batch)
        yield batch
    if stats.reads == 0:
        if stats.skipped_empty:
            raise InputFormatError(
                f"{path}: all {stats.skipped_empty} records have a header but no sequence at all"
            )
        raise InputFormatError(f"{path}: no reads found in this {stats.format.upper()} file")


def _count(stats: ReadStats, batch: ReadBatch) -> None:
    lengths = [len(s) for s in batch.sequences]
    stats.reads += len(lengths)
    stats.bases += sum(lengths)
    stats.lengths.extend(lengths)


def _check_letters(path: Path, batch: ReadBatch, last_record_number: int) -> None:
    """Validate a whole batch with one regex scan; locate the offending read only on failure."""
    joined = "".join(batch.sequences)
    if _NOT_NUCLEOTIDE.search(joined) is None:
        return
    for index, sequence in enumerate(batch.sequences):
        bad = _NOT_NUCLEOTIDE.search(sequence)
        if bad is None:
            continue
        # Record numbers count skipped empty records too; report the read's id, which is exact.
        where = f"read {batch.ids[index]!r} (in or before record {last_record_number})"
        if PROTEIN_ONLY_LETTERS.intersection(sequence):
            raise InputFormatError(
                f"{path}: {where} looks like a protein sequence (letters such as "
                f"{''.join(sorted(PROTEIN_ONLY_LETTERS.intersection(sequence)))[:10]}); "
                "VirNucPro needs DNA reads"
            )
        raise InputFormatError(
            f"{path}: {where} contains {bad.group()!r} at position {bad.start() + 1}, "
            "which is not a nucleotide letter (allowed: ACGT, U, N and IUPAC ambiguity codes)"
        )


def _open_text(path: Path, compressed: bool) -> io.TextIOBase:
    # ascii, strict: binary garbage fails to decode instead of turning into odd letters.
    # newline=None turns CRLF line ends into plain newlines.
    if compressed:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="ascii", newline=None)
    return open(path, encoding="ascii", newline=None)


def _read_guarded(path: Path, handle: io.TextIOBase, size: int) -> str:
    try:
        text = handle.read(size)
    except (EOFError, OSError, zlib.error, UnicodeDecodeError) as error:
        raise _decode_problem(path, error) from None
    if "\x00" in text:
        raise InputFormatError(f"{path}: binary data, not a FASTA/FASTQ text file")
    return text


def _decode_problem(path: Path, error: Exception) -> InputFormatError:
    if isinstance(error, UnicodeDecodeError):
        return InputFormatError(
            f"{path}: binary data or non-ASCII text at byte {error.start}, not a FASTA/FASTQ text file"
        )
    if isinstance(error, EOFError):
        return InputFormatError(f"{path}: the gzip stream is truncated (the file was cut short)")
    return InputFormatError(f"{path}: cannot be decompressed: {error}")


class _GuardedText:
    """Line iterator over a text handle that turns decode and gzip errors into InputFormatError."""

    def __init__(self, path: Path, handle: io.TextIOBase):
        self._path = path
        self._handle = handle

    def read(self, size: int = -1) -> str:
        return self._handle.read(size)

    def readline(self) -> str:
        try:
            line = self._handle.readline()
        except (EOFError, OSError, zlib.error, UnicodeDecodeError) as error:
            raise _decode_problem(self._path, error) from None
        if "\x00" in line:
            raise InputFormatError(f"{self._path}: binary data, not a FASTA/FASTQ text file")
        return line

    def __iter__(self) -> Iterator[str]:
        while line := self.readline():
            yield line
