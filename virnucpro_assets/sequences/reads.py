"""Reading sequencing reads: FASTA or FASTQ, plain or compressed (gzip, bz2, xz, zstd), told apart
by content, never by file name.

Every problem with a file is an `InputFormatError` naming the file, the record (number and id)
where it applies, and what is wrong. Reads come out in batches so that files of tens of millions of
reads never have to sit in memory as Python objects. The file is read once: the same pass that
parses it also hashes its bytes as they are on disk, so the content checked against the sample
registry is exactly the content parsed.

What is read as what: `U`/`u` (RNA) become `T`/`t`; a UTF-8 byte-order mark at the start is
skipped; a header's description (after the read id) may be any UTF-8 text, since it is dropped;
read ids, sequences and qualities must be ASCII.

Plainly well-formed content (the usual reads file) is parsed fast, a block at a time; anything else
goes through Biopython's parsers a line at a time, which alone decide the edge cases and word the
errors (see `_parse_plain`).
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import hashlib
import io
import lzma
import re
import zlib
from array import array
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from pathlib import Path

import zstandard
from Bio.SeqIO.FastaIO import SimpleFastaParser
from Bio.SeqIO.QualityIO import FastqGeneralIterator

from virnucpro_assets.errors import InputFormatError

# Compressions told apart by their first bytes, each with the command that undoes it.
MAGIC = {
    "gzip": (b"\x1f\x8b", "gunzip"),
    "bz2": (b"BZh", "bunzip2"),
    "xz": (b"\xfd7zXZ\x00", "unxz"),
    "zstd": (b"\x28\xb5\x2f\xfd", "unzstd"),
}
ZIP_MAGIC = b"PK\x03\x04"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# IUPAC nucleotide codes (U for RNA, read as T). N and the ambiguity letters are valid input: the
# translation drops any codon that contains them.
NUCLEOTIDE_LETTERS = frozenset("ACGTURYSWKMBDHVNacgturyswkmbdhvn")
# Letters that occur in proteins but are not nucleotide codes: seeing them means a protein FASTA.
PROTEIN_ONLY_LETTERS = frozenset("EFILPQZXJOefilpqzxjo")
_NOT_NUCLEOTIDE = re.compile(r"[^ACGTURYSWKMBDHVNacgturyswkmbdhvn]")
_RNA_TO_DNA = str.maketrans("Uu", "Tt")
# Control characters that never occur in a text reads file (tab, newlines, form feed may).
_BINARY_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")
_SNIFF_BYTES = 64 * 1024
_DECOMPRESSION_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError)
# The fast path reads the decompressed content this many bytes at a time, or more for a record
# longer than that. Blocks that stay in the CPU's caches parse faster than 16-MiB ones
# (benchmarks/ingest.py measures both). Tests make it tiny, so that records straddle blocks.
_BLOCK_BYTES = 512 << 10
# The bytes of plain text: printable ASCII, tab and newline (no CR, NUL or other control byte).
_PLAIN_TEXT_BYTES = b"\t\n" + bytes(range(0x20, 0x7F))
_NUCLEOTIDE_BYTES = "".join(sorted(NUCLEOTIDE_LETTERS)).encode()


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
    # "gzip", "bz2", "xz" or "zstd"; None for a plain file.
    compression: str | None = None
    # Reads that held U/u (RNA), and how many U/u letters were read as T/t.
    rna_reads: int = 0
    rna_bases: int = 0
    # sha256 and size of the file's bytes as read (compressed, as on disk); set once it is read whole.
    sha256: str = ""
    file_bytes: int = 0
    lengths: array = field(default_factory=lambda: array("I"), repr=False)


def sniff_format(path: Path) -> tuple[str, str | None]:
    """Return ("fasta" | "fastq", compression or None) for a reads file, or raise InputFormatError
    saying why not. Only the start of the file is read; no message quotes the file's content."""
    with _open_reads(path) as opened:
        return opened.format, opened.compression


def read_batches(
    path: Path,
    stats: ReadStats,
    batch_size: int = 100_000,
    *,
    expected_sha256: str | None = None,
    sample: str | None = None,
) -> Iterator[ReadBatch]:
    """Yield validated reads of `path` in file order, `batch_size` at a time, reading the file once.

    Record ids are the header's first word (the description is dropped, as the original does).
    Empty records are skipped and counted in `stats`; everything else wrong raises InputFormatError.
    Duplicate ids are the caller's to check, since they need all ids at once.

    The file's bytes are hashed as they are read; `stats.sha256` holds the result at the end. With
    `expected_sha256` (the registered checksum of `sample`), a file whose bytes differ raises
    InputFormatError after its last batch, so a caller that publishes only once the iteration ends
    never publishes reads of a file other than the registered one.
    """
    with _open_reads(path) as opened:
        stats.format, stats.compression = opened.format, opened.compression
        plain = yield from _parse_plain(opened.content, stats, batch_size)
        if plain:
            stats.sha256, stats.file_bytes = opened.finish_hash()
    if not plain:
        yield from parse_exactly(path, stats, batch_size, skip=stats.reads)
    if expected_sha256 is not None and stats.sha256 != expected_sha256:
        registered = f" as sample {sample!r}" if sample else ""
        raise InputFormatError(
            f"{path}: changed since it was registered{registered} (sha256 {expected_sha256[:12]}… then, "
            f"{stats.sha256[:12]}… now, {stats.file_bytes:,} bytes read): add it again as a new sample "
            f"with `virnucpro-assets add-sample {path} --name NEW_NAME`, or put the registered content back"
        )


def _parse_plain(content: io.BufferedIOBase, stats: ReadStats, batch_size: int) -> Generator[ReadBatch, None, bool]:
    """Yield the reads of plainly well-formed content a block at a time; return True at its end, or
    False at the first block that the checks here do not prove plain, whose reads are not yielded.

    Why the exact path stays: this one is several times faster than Biopython's line-at-a-time
    parsers, but it only recognizes the plain shape (FASTQ records of 4 lines with a bare '+', FASTA
    records whose sequence lines hold nucleotide letters only; printable ASCII and LF line ends).
    Everything else (CRLF, blank lines, '+title' separators, empty records, non-ASCII bytes, bad
    letters, truncation, decompression errors, ...) is left to `parse_exactly`, so that what is
    accepted, and every error message, is exactly what the exact path makes of the file."""
    split = _plain_fastq if stats.format == "fastq" else _plain_fasta
    carry = ""
    while True:
        try:
            chunk = content.read(max(_BLOCK_BYTES, len(carry)))  # a long record: read it in O(length)
        except _DECOMPRESSION_ERRORS:
            return False
        if chunk.translate(None, _PLAIN_TEXT_BYTES):
            return False
        text = carry + chunk.decode("ascii")
        if not chunk:  # the end: neither trailing blank lines nor a missing last newline change a record
            text = text.rstrip("\n")
            if not text:
                return True
            text += "\n"
        records = split(text, at_end=not chunk)
        if records is None:
            return False
        titles, sequences, carry = records
        if sequences:
            if "" in sequences or "".join(sequences).encode().translate(None, _NUCLEOTIDE_BYTES):
                return False
            # The read id is the title's first word: the title up to its first space or tab.
            titles = titles.replace("\t", " ")
            ids = [title.partition(" ")[0] for title in titles.split("\n")] if " " in titles else titles.split("\n")
            if "" in ids:  # a blank title, or one that starts with a space
                return False
            for start in range(0, len(ids), batch_size):
                batch = ReadBatch(ids[start : start + batch_size], sequences[start : start + batch_size])
                _count(batch, stats)
                yield batch
        if not chunk:
            return True


def _plain_fastq(text: str, at_end: bool) -> tuple[str, list[str], str] | None:
    """(the titles, newline-joined; the sequences; the text after the last whole record) of `text`
    cut into 4-line FASTQ records, or None unless every record is plain."""
    lines = text.split("\n")
    whole = (len(lines) - 1) // 4 * 4  # the last item is the line after the last newline
    if at_end and whole != len(lines) - 1:
        return None
    carry = "\n".join(lines[whole:])
    del lines[whole:]
    headers, sequences, qualities = "\n".join(lines[0::4]), lines[1::4], lines[3::4]
    if not sequences:
        return "", [], carry
    joined_qualities = "".join(qualities)
    plain = (
        headers.startswith("@")
        and headers.count("\n@") == len(sequences) - 1
        and lines[2::4].count("+") == len(sequences)
        and list(map(len, sequences)) == list(map(len, qualities))
        # Biopython strips whitespace off the end of a quality line.
        and " " not in joined_qualities
        and "\t" not in joined_qualities
    )
    return (headers[1:].replace("\n@", "\n"), sequences, carry) if plain else None


def _plain_fasta(text: str, at_end: bool) -> tuple[str, list[str], str] | None:
    """(the titles, newline-joined; the sequences; the text from the last header on, unless
    `at_end`) of `text` cut into FASTA records, or None unless it starts with a header."""
    if not text.startswith(">"):
        return None
    records = text[1:].split("\n>")
    carry = "" if at_end else ">" + records.pop()
    records = list(map(str.partition, records, repeat("\n")))
    return "\n".join(map(itemgetter(0), records)), [lines.replace("\n", "") for _, _, lines in records], carry


def parse_exactly(path: Path, stats: ReadStats, batch_size: int = 100_000, *, skip: int = 0) -> Iterator[ReadBatch]:
    """The exact path: parse `path` from its start through Biopython's parsers, a line at a time,
    counting `stats` afresh, and yield its reads after the first `skip` (those that `_parse_plain`
    yielded before it gave up). With no `skip`, it yields the reads that `read_batches` yields (in
    other batches), counts the same stats and raises the same errors: the reference for the fast path."""
    vars(stats).update(vars(ReadStats()))
    with _open_reads(path) as opened:
        stats.format, stats.compression = opened.format, opened.compression
        for batch in _parse(path, opened.lines, stats, batch_size):
            unseen = stats.reads - skip
            if unseen > 0:
                yield ReadBatch(batch.ids[-unseen:], batch.sequences[-unseen:])
        stats.sha256, stats.file_bytes = opened.finish_hash()


def _parse(path: Path, lines: _Lines, stats: ReadStats, batch_size: int) -> Iterator[ReadBatch]:
    fastq = stats.format == "fastq"
    records = (FastqGeneralIterator if fastq else SimpleFastaParser)(lines)
    batch = ReadBatch([], [])
    record_number = 0
    last_id = ""
    while True:
        try:
            record = next(records)
        except StopIteration:
            break
        except _LineProblem as problem:
            raise InputFormatError(f"{path}: {problem.describe(record_number)}") from None
        except ValueError as error:
            after = f" (the one after read {last_id!r})" if last_id else ""
            raise InputFormatError(f"{path}: {stats.format.upper()} record {record_number + 1}{after}: {error}") from None
        record_number += 1
        title, sequence = record[0], record[1]
        if not title.isascii() and (problem := _header_problem(title, record_number)):
            raise InputFormatError(f"{path}: {problem}")
        read_id = last_id = title.split(None, 1)[0] if title.strip() else ""
        if not read_id:
            raise InputFormatError(f"{path}: record {record_number} has a header with no read id")
        if fastq and not record[2].isascii():
            raise InputFormatError(
                f"{path}: record {record_number} (read {read_id!r}): the quality line has the non-ASCII "
                f"byte {_first_non_ascii(record[2])}; FASTQ qualities are ASCII characters"
            )
        if not sequence:
            stats.skipped_empty += 1
            continue
        batch.ids.append(read_id)
        batch.sequences.append(sequence)
        if len(batch.ids) >= batch_size:
            _check_and_count(path, batch, record_number, stats)
            yield batch
            batch = ReadBatch([], [])
    if batch.ids:
        _check_and_count(path, batch, record_number, stats)
        yield batch
    if stats.reads == 0:
        if stats.skipped_empty:
            raise InputFormatError(f"{path}: all {stats.skipped_empty} records have a header but no sequence at all")
        raise InputFormatError(f"{path}: no reads found in this {stats.format.upper()} file")


def _check_and_count(path: Path, batch: ReadBatch, last_record_number: int, stats: ReadStats) -> None:
    """Validate a whole batch with one regex scan, read U as T, and count it."""
    if _NOT_NUCLEOTIDE.search("".join(batch.sequences)) is not None:
        _raise_bad_letter(path, batch, last_record_number)
    _count(batch, stats)


def _count(batch: ReadBatch, stats: ReadStats) -> None:
    """Read U as T in a batch of valid reads, and count it."""
    joined = "".join(batch.sequences)
    rna_bases = joined.count("U") + joined.count("u")
    if rna_bases:
        stats.rna_bases += rna_bases
        for index, sequence in enumerate(batch.sequences):
            if "U" in sequence or "u" in sequence:
                stats.rna_reads += 1
                batch.sequences[index] = sequence.translate(_RNA_TO_DNA)
    lengths = list(map(len, batch.sequences))
    stats.reads += len(lengths)
    stats.bases += len(joined)
    stats.lengths.extend(lengths)


def _raise_bad_letter(path: Path, batch: ReadBatch, last_record_number: int) -> None:
    """Locate the first read with a letter that is no nucleotide code and say what it is."""
    for index, sequence in enumerate(batch.sequences):
        bad = _NOT_NUCLEOTIDE.search(sequence)
        if bad is None:
            continue
        # Record numbers count skipped empty records too; report the read's id, which is exact.
        where = f"read {batch.ids[index]!r} (in or before record {last_record_number})"
        if not bad.group().isascii():
            raise InputFormatError(
                f"{path}: {where} has the non-ASCII byte {_first_non_ascii(sequence)} at position {bad.start() + 1} "
                "of its sequence; sequences are ASCII nucleotide letters"
            )
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


def _header_problem(title: str, record_number: int) -> str | None:
    """What is wrong with a header holding non-ASCII bytes (decoded with surrogateescape), or None
    for an ASCII read id with a UTF-8 description."""
    read_id, description = (title.split(None, 1) + [""])[:2]
    raw_id = read_id.encode("ascii", "surrogateescape")
    if not raw_id.isascii():
        shown = raw_id.decode("utf-8", "backslashreplace")
        return (
            f"record {record_number}: the read id {shown!r} is not ASCII (byte {_first_non_ascii(read_id)}); "
            "read ids must be ASCII: rename these reads"
        )
    raw_title = title.encode("ascii", "surrogateescape")
    raw_description = description.encode("ascii", "surrogateescape")
    try:
        raw_description.decode("utf-8")
    except UnicodeDecodeError as error:
        # The description is the end of the title; columns count the header's '>' or '@' as 1.
        column = len(raw_title) - len(raw_description) + error.start + 2
        return (
            f"record {record_number} (read {read_id!r}): the header's description is not UTF-8 text "
            f"(byte 0x{raw_description[error.start]:02X} at column {column}; Latin-1 or another 8-bit "
            "encoding?): convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        )
    return None


def _first_non_ascii(text: str) -> str:
    character = next(c for c in text if not c.isascii())
    # Non-ASCII bytes arrive as surrogate escapes (U+DC80..U+DCFF stand for bytes 0x80..0xFF).
    return f"0x{ord(character) - 0xDC00:02X}" if 0xDC80 <= ord(character) <= 0xDCFF else f"U+{ord(character):04X}"


class _LineProblem(Exception):
    """A line that cannot be in a reads file; turned into an InputFormatError by the parse loop,
    which knows how many records the parser has yielded before it."""

    def __init__(self, line_number: int, fastq_in_fasta: bool):
        self.line_number, self.fastq_in_fasta = line_number, fastq_in_fasta

    def describe(self, records_before: int) -> str:
        if self.fastq_in_fasta:
            # The FASTA parser is collecting record records_before + 1 when it meets the '@' line.
            return (
                f"record {records_before + 2} (line {self.line_number}) is a FASTQ record ('@' header) after FASTA "
                f"record {records_before + 1}: the file mixes FASTA and FASTQ; give each its own file"
            )
        return f"binary data (a NUL byte) at line {self.line_number}, in or after record {records_before}: not FASTA/FASTQ text"


class _Lines:
    """The text lines Biopython's parsers iterate over; counts them, and turns decompression errors,
    NUL bytes and FASTQ headers inside a FASTA file into InputFormatError or _LineProblem."""

    def __init__(self, path: Path, text: io.TextIOBase, fasta: bool, compression: str | None):
        self._path, self._text, self._fasta, self._compression = path, text, fasta, compression
        self.number = 0

    def read(self, size: int) -> str:
        # Biopython calls read(0) only, to check that the handle is in text mode.
        return self._text.read(size)

    def readline(self) -> str:
        try:
            line = self._text.readline()
        except _DECOMPRESSION_ERRORS as error:
            raise _read_problem(self._path, error, self._compression, f" (after line {self.number})") from None
        self.number += 1
        if "\x00" in line:
            raise _LineProblem(self.number, fastq_in_fasta=False)
        if self._fasta and line.startswith("@"):
            raise _LineProblem(self.number, fastq_in_fasta=True)
        return line

    def __iter__(self) -> Iterator[str]:
        while line := self.readline():
            yield line


class _Opened:
    """The decompressed content as bytes (`content`) and as text lines (`lines`): read one of them."""

    def __init__(self, content: io.BufferedReader, lines: _Lines, reads_format: str, compression: str | None, hashed: _HashingReader):
        self.content, self.lines, self.format, self.compression, self._hashed = content, lines, reads_format, compression, hashed

    def finish_hash(self) -> tuple[str, int]:
        """(sha256, size) of every byte of the file, reading whatever the parse left unread."""
        while self._hashed.read(1 << 20):
            pass
        return self._hashed.digest.hexdigest(), self._hashed.size


class _HashingReader(io.RawIOBase):
    """The file's raw bytes, hashed as they pass."""

    def __init__(self, raw: io.RawIOBase):
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._raw.readinto(buffer)
        if count:
            self.digest.update(memoryview(buffer)[:count])
            self.size += count
        return count


class _Prefixed(io.RawIOBase):
    """`head` (already read for sniffing) followed by the rest of `stream`."""

    def __init__(self, head: bytes, stream):
        self._head, self._stream = memoryview(head), stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        return self._stream.readinto(buffer)


class _ZstdReader(io.RawIOBase):
    """zstd frames one after another, as `zstd -d` reads them, and an EOFError for a frame cut short
    (zstandard's own stream reader ends silently there)."""

    def __init__(self, stream):
        self._stream = stream
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame = self._decompressor.decompressobj()
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._out:
            # Small input pieces keep the output of one piece small even for very compressible data.
            chunk = self._stream.read(128 * 1024)
            if not chunk:
                if not self._frame.eof:
                    raise EOFError("the last zstd frame is incomplete")
                return 0
            self._out = memoryview(self._decompress(chunk))
        count = min(len(buffer), len(self._out))
        buffer[:count] = self._out[:count]
        self._out = self._out[count:]
        return count

    def _decompress(self, chunk: bytes) -> bytes:
        output = []
        while chunk:
            if self._frame.eof:
                self._frame = self._decompressor.decompressobj()
            output.append(self._frame.decompress(chunk))
            chunk = self._frame.unused_data if self._frame.eof else b""
        return b"".join(output)


@contextmanager
def _open_reads(path: Path) -> Iterator[_Opened]:
    if not path.exists():
        raise InputFormatError(f"{path}: no such file")
    if path.is_dir():
        raise InputFormatError(f"{path}: is a directory, not a reads file (give a FASTA or FASTQ file)")
    with open(path, "rb", buffering=0) as raw:
        hashed = _HashingReader(raw)
        on_disk = io.BufferedReader(hashed, 1 << 20)
        compression = _compression_of(on_disk.peek(8)[:8])
        decompressed = _decompressor(on_disk, compression)
        try:
            head = decompressed.read(_SNIFF_BYTES)
        except _DECOMPRESSION_ERRORS as error:
            raise _read_problem(path, error, compression, "") from None
        head = _check_head(path, head, compression)
        reads_format = "fasta" if head.lstrip()[:1] == b">" else "fastq"
        # ascii with surrogateescape: non-ASCII bytes reach the record checks, which say where they
        # are; newline=None turns CRLF (and lone CR) line ends into plain newlines.
        content = io.BufferedReader(_Prefixed(head, decompressed), 1 << 20)
        text = io.TextIOWrapper(content, encoding="ascii", errors="surrogateescape", newline=None)
        yield _Opened(content, _Lines(path, text, reads_format == "fasta", compression), reads_format, compression, hashed)


def _compression_of(first_bytes: bytes) -> str | None:
    return next((name for name, (magic, _) in MAGIC.items() if first_bytes.startswith(magic)), None)


def _decompressor(stream: io.BufferedReader, compression: str | None):
    if compression == "gzip":
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if compression == "bz2":
        return bz2.BZ2File(stream)
    if compression == "xz":
        return lzma.LZMAFile(stream)
    if compression == "zstd":
        return io.BufferedReader(_ZstdReader(stream), 1 << 20)
    return stream


def _check_head(path: Path, head: bytes, compression: str | None) -> bytes:
    """The start of the (decompressed) content without a UTF-8 BOM, or InputFormatError saying why it
    is no reads file. Messages describe the content, never quote it."""
    # A plain file starting with magic bytes was taken as compressed, so `compression` is set here.
    inner = _compression_of(head[:8])
    if inner is not None:
        nested = f"nested {inner}" if inner == compression else f"{inner} inside {compression}"
        raise InputFormatError(
            f"{path}: {nested}: the content is compressed twice; decompress it once (`{MAGIC[compression][1]}`), and add the result"
        )
    if head.startswith(ZIP_MAGIC):
        raise InputFormatError(f"{path}: a zip archive, not a FASTA/FASTQ file: unzip it and add the reads file inside")
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    elif head.startswith(UTF16_BOMS):
        raise InputFormatError(f"{path}: UTF-16 text (it starts with a UTF-16 byte-order mark): save it as ASCII or UTF-8 text")
    if not head.strip():
        raise InputFormatError(f"{path}: the file is empty (no reads)")
    if binary := _BINARY_BYTES.search(head):
        raise InputFormatError(
            f"{path}: binary data (a control byte at byte {binary.start() + 1}{' of the decompressed content' if compression else ''}), "
            "not a FASTA/FASTQ text file"
        )
    first = head.lstrip()[:1]
    if first not in (b">", b"@"):
        line = head[: len(head) - len(head.lstrip())].count(b"\n") + 1
        raise InputFormatError(
            f"{path}: neither FASTA (records start with '>') nor FASTQ (records start with '@'): "
            f"line {line}, its first non-blank line, starts with {_kind_of(first)}"
        )
    return head


def _kind_of(character: bytes) -> str:
    if character.isalpha():
        return "a letter"
    if character.isdigit():
        return "a digit"
    if not character.isascii():
        return "a non-ASCII byte"
    return "a punctuation mark or symbol"


def _read_problem(path: Path, error: Exception, compression: str | None, where: str) -> InputFormatError:
    if compression is None:
        return InputFormatError(f"{path}: cannot be read{where}: {error}")
    if isinstance(error, EOFError):
        return InputFormatError(f"{path}: the {compression} stream is truncated (the file was cut short){where}")
    # The decompressors' own messages may quote bytes of the file (gzip's "Not a gzipped file (b'..')").
    return InputFormatError(f"{path}: cannot be decompressed as {compression}{where}: the data is corrupt ({type(error).__name__})")
