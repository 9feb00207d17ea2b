import bz2
import codecs
import gzip
import hashlib
import lzma

import numpy as np
import pytest
import zstandard

from virnucpro_assets.errors import InputFormatError
from virnucpro_assets.sequences import reads as reads_module
from virnucpro_assets.sequences.reads import ReadStats, parse_exactly, read_batches, sniff_format
from virnucpro_assets.sequences.sharding import sequence_hashes, shard_of_reads, split_reads
from virnucpro_assets.sequences.translation import translate_reads


def read_all(path):
    stats = ReadStats()
    reads = [r for batch in read_batches(path, stats, batch_size=2) for r in zip(batch.ids, batch.sequences)]
    return reads, stats


def test_fasta_with_wrapped_lines_crlf_descriptions_and_lower_case(tmp_path):
    path = tmp_path / "a.fasta"
    path.write_bytes(b">r1 some description\r\nACGTac\r\ngtNN\r\n>r2\r\nTTTT\r\n\r\n>r3\tdesc\nRYKM\n")
    reads, stats = read_all(path)
    assert reads == [("r1", "ACGTacgtNN"), ("r2", "TTTT"), ("r3", "RYKM")]
    assert (stats.format, stats.compression, stats.reads, stats.bases) == ("fasta", None, 3, 18)


COMPRESSIONS = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_compression_is_detected_from_content_not_extension(tmp_path, compression):
    path = tmp_path / "reads.txt"
    path.write_bytes(COMPRESSIONS[compression](b"@q1 x\nACGT\n+\nIIII\n@q2\nGG\n+q2\n!!\n"))
    reads, stats = read_all(path)
    assert reads == [("q1", "ACGT"), ("q2", "GG")]
    assert (stats.format, stats.compression) == ("fastq", compression)
    assert sniff_format(path) == ("fastq", compression)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_truncated_compressed_files_say_so(tmp_path, compression):
    path = tmp_path / "cut.fa"
    whole = COMPRESSIONS[compression](b"".join(b">r%d\nACGTACGTAC\n" % i for i in range(20000)))
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputFormatError, match=f"{path}: the {compression} stream is truncated"):
        read_all(path)


def test_rna_is_read_as_dna_and_counted(tmp_path):
    rna = tmp_path / "rna.fa"
    rna.write_text(">r1\nAUGGCU\n>r2\naugc\n>r3\nACGT\n")
    reads, stats = read_all(rna)
    assert reads == [("r1", "ATGGCT"), ("r2", "atgc"), ("r3", "ACGT")]
    assert (stats.rna_reads, stats.rna_bases, stats.bases) == (2, 3, 14)
    dna = tmp_path / "dna.fa"
    dna.write_text(rna.read_text().replace("U", "T").replace("u", "t"))
    rna_shards, _ = split_reads(rna, 2)
    dna_shards, dna_stats = split_reads(dna, 2)
    assert dna_stats.rna_reads == 0 and rna_shards == dna_shards


def test_a_utf8_byte_order_mark_and_a_utf8_description_are_accepted(tmp_path):
    path = tmp_path / "bom.fa"
    path.write_bytes(codecs.BOM_UTF8 + ">r1 Zürich isolate\nACGT\n>r2\nGG\n".encode())
    assert read_all(path)[0] == [("r1", "ACGT"), ("r2", "GG")]


def test_plain_fastq_with_at_sign_in_quality(tmp_path):
    path = tmp_path / "r.fq"
    path.write_text("@a\nACG\n+\n@@I\n@b\nT\n+\n@\n")
    assert read_all(path)[0] == [("a", "ACG"), ("b", "T")]


def test_empty_records_are_skipped_and_counted(tmp_path):
    path = tmp_path / "e.fa"
    path.write_text(">a\nACGT\n>empty\n>b\nGG\n")
    reads, stats = read_all(path)
    assert reads == [("a", "ACGT"), ("b", "GG")] and stats.skipped_empty == 1


BAD_INPUTS = {
    "empty file": (b"", "empty"),
    "neither FASTA nor FASTQ": (b"hello world\nthis is text\n", "neither FASTA"),
    "binary garbage": (bytes(range(256)) * 4, "binary"),
    "nested gzip": (gzip.compress(gzip.compress(b">a\nACGT\n")), "nested gzip: the content is compressed twice; decompress it once"),
    "zstd inside xz": (lzma.compress(zstandard.ZstdCompressor().compress(b">a\nACGT\n")), "zstd inside xz"),
    "zip archive": (b"PK\x03\x04" + bytes(40), "a zip archive"),
    "UTF-16 text": (">a\nACGT\n".encode("utf-16"), "UTF-16 text"),
    "non-ASCII read id": (b">a\nACGT\n>r\xc3\xa9ad2 x\nACGT\n", "record 2: the read id 'r\xe9ad2' is not ASCII (byte 0xC3)"),
    "latin-1 description": (
        b">a\nACGT\n>b from Z\xfcrich\nACGT\n",
        "record 2 (read 'b'): the header's description is not UTF-8 text (byte 0xFC at column 10",
    ),
    "non-ASCII byte in a sequence": (
        b">a\nACGT\n>b\nAC\xc3\xa9GT\n",
        "read 'b' (in or before record 2) has the non-ASCII byte 0xC3 at position 3",
    ),
    "non-ASCII byte in a quality": (b"@a\nACGT\n+\nII\xe9I\n", "record 1 (read 'a'): the quality line has the non-ASCII byte 0xE9"),
    "NUL byte past the start": (b">a\n" + b"ACGT" * 20_000 + b"\n>b\nAC\x00GT\n", "binary data (a NUL byte) at line 4"),
    "FASTA then FASTQ": (
        b">a\nACGT\n>b\nACGT\n@c\nACGT\n+\nIIII\n",
        "record 3 (line 5) is a FASTQ record ('@' header) after FASTA record 2: the file mixes FASTA and FASTQ",
    ),
    "duplicate read ids": (b">a\nACGT\n>b\nAC\n>a\nGG\n", "'a' occurs 2 times"),
    "protein FASTA": (b">p1\nMKVLAEFIPQRST\n", "protein"),
    "quality of the wrong length": (b"@a\nACGT\n+\nIII\n@b\nA\n+\nI\n", "Lengths of sequence and quality"),
    "truncated FASTQ record": (b"@a\nACGT\n+\nIIII\n@b\nACGT\n", "record 2"),
    "headers with no sequence": (b">a\n>b\n>c\n", "no sequence at all"),
    "digits in a read": (b">a\nACGT\n>b\nAC9T\n", "'9' at position 3"),
    "punctuation in a read": (b">a\nAC-T\n", "'-' at position 3"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_fails_with_a_message_naming_file_and_problem(tmp_path, case):
    content, expected = BAD_INPUTS[case]
    path = tmp_path / "input.fasta"
    path.write_bytes(content)
    with pytest.raises(InputFormatError) as error:
        split_reads(path, 2)
    assert str(path) in str(error.value) and expected in str(error.value)


def test_sniffing_messages_never_quote_the_content(tmp_path):
    path = tmp_path / "id_ed25519"
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n")
    with pytest.raises(InputFormatError) as error:
        sniff_format(path)
    assert "line 1, its first non-blank line, starts with a punctuation mark or symbol" in str(error.value)
    assert "BEGIN" not in str(error.value) and "b3Bl" not in str(error.value)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_the_bytes_read_are_the_bytes_checked(tmp_path, compression):
    path = tmp_path / "s.fq"
    text = b"".join(b"@r%d\nACGTACGTAC\n+\nIIIIIIIIII\n" % i for i in range(100))
    path.write_bytes(gzip.compress(text) if compression else text)
    registered = sha256(path)
    stats = ReadStats()
    assert sum(len(b.ids) for b in read_batches(path, stats, expected_sha256=registered, sample="s")) == 100
    assert (stats.sha256, stats.file_bytes) == (registered, path.stat().st_size)
    with open(path, "ab") as handle:
        handle.write(gzip.compress(b"@extra\nACGT\n+\nIIII\n") if compression else b"@extra\nACGT\n+\nIIII\n")
    with pytest.raises(InputFormatError) as error:
        list(read_batches(path, ReadStats(), expected_sha256=registered, sample="s"))
    assert str(error.value).startswith(f"{path}: changed since it was registered as sample 's' (sha256 {registered[:12]}… then")
    assert "add it again as a new sample with `virnucpro-assets add-sample" in str(error.value)


def test_reads_appended_while_the_file_is_read_fail_the_check(tmp_path):
    path = tmp_path / "big.fq"
    # 3 MB: more than the reader's 1 MiB buffer, so the first batch leaves most of the file unread.
    path.write_bytes(b"".join(b"@r%d\n%s\n+\n%s\n" % (i, b"ACGT" * 25, b"I" * 100) for i in range(14000)))
    registered = sha256(path)
    batches = read_batches(path, ReadStats(), batch_size=100, expected_sha256=registered, sample="big")
    next(batches)
    with open(path, "ab") as handle:
        handle.write(b"".join(b"@new%d\nACGT\n+\nIIII\n" % i for i in range(500)))
    with pytest.raises(InputFormatError, match="changed since it was registered as sample 'big'"):
        list(batches)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(InputFormatError, match="no such file"):
        sniff_format(tmp_path / "nope.fa")
    with pytest.raises(InputFormatError, match="is a directory"):
        sniff_format(tmp_path)


def test_identical_reads_share_a_shard_in_file_order_with_their_file_positions(tmp_path):
    path = tmp_path / "r.fa"
    sequences = ["ACGT", "GGGCCC", "ACGT", "TTA", "GGGCCC", "ACGT", "CATCAT"]
    path.write_text("".join(f">r{i}\n{sequence}\n" for i, sequence in enumerate(sequences)))
    tables, stats = split_reads(path, 3)
    assert stats.reads == 7 and split_reads(path, 3)[0] == tables
    assert sorted(sum((t.column("read_id").to_pylist() for t in tables), [])) == [f"r{i}" for i in range(7)]
    for table in tables:
        positions = table.column("file_position").to_pylist()
        assert positions == sorted(positions)  # file order within a shard
        assert table.column("read_id").to_pylist() == [f"r{p}" for p in positions]
        assert table.column("sequence").to_pylist() == [sequences[p] for p in positions]
    shard_of = {sequence: index for index, table in enumerate(tables) for sequence in table.column("sequence").to_pylist()}
    for index, table in enumerate(tables):  # every copy of a sequence is in one shard
        assert all(shard_of[sequence] == index for sequence in table.column("sequence").to_pylist())


def test_a_read_its_reverse_complement_and_its_lower_case_share_a_shard_as_they_share_their_pairs(genome_reads):
    reads = [sequence for _, sequence in genome_reads if len(sequence) in (150, 299, 300)]
    assert len(reads) > 80
    for read in reads:
        other_strand = read.translate(str.maketrans("ACGT", "TGCA"))[::-1]
        # Why it pays: the two strands' kept frames are the same (nucleotide, protein) pairs.
        pairs = [translate_reads(["r"], [sequence], 300).select(["nucleotide", "protein"]).to_pylist() for sequence in (read, other_strand)]
        assert sorted(map(str, pairs[0])) == sorted(map(str, pairs[1]))
        assert len(set(shard_of_reads([read, other_strand, read.lower(), other_strand.lower()], 8))) == 1
    assert len(set(shard_of_reads(reads, 8))) > 1


def test_shards_are_balanced_by_distinct_sequences_and_stable_across_runs():
    rng = np.random.default_rng(0)
    distinct = ["".join(rng.choice(list("ACGT"), 150)) for _ in range(3000)]
    counts = np.bincount(shard_of_reads(distinct * 5, 3), minlength=3)  # five copies of each
    assert counts.sum() == 15000 and counts.min() > 0.9 * 5000 and counts.max() < 1.1 * 5000
    # Fixed values: a change here reshuffles every store's shards (sample_reads' code version must change with it).
    assert sequence_hashes(["ACGT", ""]).tolist() == [18171306253132460327, 0]


def test_duplicate_read_ids_are_refused_naming_their_positions(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGT\n>b\nGGCC\n>a\nTT\n")
    with pytest.raises(InputFormatError, match=r"read id 'a' occurs 2 times \(reads 1, 3\)"):
        split_reads(bad, 2)


# The fast path (whole blocks, for plainly well-formed content) against the exact path (Biopython, a
# line at a time, which reads everything else): the same reads, stats and errors, byte for byte.


def plain_fastq(count, start=0):
    letters = ["ACGT", "acgtn", "AUGGCU", "RYSWKMBDHVN", "augc" * 40, "G"]
    return b"".join(
        b"@r%d%s\n%s\n+\n%s\n"
        % (i, [b"", b" desc x=1", b"\tdesc"][i % 3], letters[i % 6].encode(), b"@+I!"[i % 4 :][:1] * len(letters[i % 6]))
        for i in range(start, start + count)
    )


def plain_fasta(count, width=None, start=0):
    records = []
    for i in range(start, start + count):
        sequence = ("ACGTUacgtuRYKMN" * (1 + i % 5))[: 3 + i % 40]
        wrapped = sequence if width is None else "\n".join(sequence[at : at + width] for at in range(0, len(sequence), width))
        records.append(f">r{i}{[' desc', '', chr(9) + 'tab desc'][i % 3]}\n{wrapped}\n")
    return "".join(records).encode()


@pytest.fixture
def exact_calls(monkeypatch):
    """The `skip` of each fall-back of read_batches to the exact path: how many reads the fast path had yielded."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs["skip"])
        return parse_exactly(*args, **kwargs)

    monkeypatch.setattr(reads_module, "parse_exactly", counted)
    return calls


def never_plain(content, stats, batch_size):
    yield from ()
    return False


def both_paths(path, batch_size=7):
    """(reads, stats) by read_batches and by the exact path alone."""
    results = []
    for parse in (read_batches, parse_exactly):
        stats = ReadStats()
        batches = list(parse(path, stats, batch_size))
        assert all(0 < len(batch.ids) == len(batch.sequences) <= batch_size for batch in batches)
        results.append(([r for batch in batches for r in zip(batch.ids, batch.sequences)], stats))
    return results


PLAIN_INPUTS = {
    "fastq": plain_fastq(300),
    "fastq without a last newline": plain_fastq(300)[:-1],
    "fastq with trailing blank lines": plain_fastq(300) + b"\n\n",
    "fastq with a byte-order mark": codecs.BOM_UTF8 + plain_fastq(300),
    "single-line fasta": plain_fasta(300),
    "multi-line fasta": plain_fasta(300, width=7),
    "fasta with blank lines inside records": plain_fasta(300, width=5).replace(b"\n>", b"\n\n>").replace(b"A", b"A\n\n"),
    "fasta without a last newline": plain_fasta(300, width=11)[:-1],
}


@pytest.mark.parametrize("block_bytes", [1, 13, 4096, 16 << 20])
@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("case", PLAIN_INPUTS)
def test_the_fast_path_reads_plain_files_as_the_exact_path_does(tmp_path, monkeypatch, exact_calls, case, compression, block_bytes):
    monkeypatch.setattr(reads_module, "_BLOCK_BYTES", block_bytes)
    path = tmp_path / "reads"
    path.write_bytes(gzip.compress(PLAIN_INPUTS[case]) if compression else PLAIN_INPUTS[case])
    (fast, fast_stats), (exact, exact_stats) = both_paths(path)
    assert exact_calls == []  # all read by the fast path
    assert fast == exact and len(fast) == 300
    assert fast_stats == exact_stats and fast_stats.rna_reads > 0 and fast_stats.sha256 == sha256(path)


def test_the_fast_path_takes_the_first_word_of_a_header_and_reads_u_as_t(tmp_path, exact_calls):
    path = tmp_path / "r.fq"
    path.write_bytes(b"@a desc\nACGU\n+\n@III\n@b\tx y\nnnry\n+\n+II!\n")
    assert read_all(path)[0] == [("a", "ACGT"), ("b", "nnry")]
    path.write_bytes(b">a desc\nACGU\nac\n>b\tx y\nnnry\n")
    assert read_all(path)[0] == [("a", "ACGTac"), ("b", "nnry")]
    assert exact_calls == []


# Valid files that the fast path leaves to the exact path, the odd record well after the first block.
ODD_BUT_VALID = {
    "CRLF line ends": (plain_fastq(200), plain_fastq(100, 200).replace(b"\n", b"\r\n")),
    "a '+title' separator": (plain_fastq(200), b"@r200 d\nACGT\n+r200 d\nIIII\n" + plain_fastq(99, 201)),
    "a multi-line fastq record": (plain_fastq(200), b"@r200\nAC\nGT\n+\nII\nII\n" + plain_fastq(99, 201)),
    "an empty record": (plain_fasta(200), b">empty\n" + plain_fasta(100, start=200)),
    "a UTF-8 description": (plain_fasta(200), ">r200 Zürich\nACGT\n".encode() + plain_fasta(99, start=201)),
    "a space inside a sequence": (plain_fasta(200), b">r200\nAC GT\n" + plain_fasta(99, start=201)),
    "an id after a space": (plain_fasta(200), b"> r200\nACGT\n" + plain_fasta(99, start=201)),
}


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("case", ODD_BUT_VALID)
def test_the_exact_path_takes_over_valid_files_it_alone_reads_and_nothing_is_lost_or_repeated(
    tmp_path, monkeypatch, exact_calls, case, compression
):
    monkeypatch.setattr(reads_module, "_BLOCK_BYTES", 1000)
    good, odd = ODD_BUT_VALID[case]
    path = tmp_path / "reads"
    path.write_bytes(gzip.compress(good + odd) if compression else good + odd)
    (fast, fast_stats), (exact, exact_stats) = both_paths(path)
    assert len(exact_calls) == 1 and exact_calls[0] > 150  # after the reads of many 1000-byte blocks
    assert fast == exact and [read_id for read_id, _ in fast] == [f"r{i}" for i in range(300)]
    assert fast_stats == exact_stats and fast_stats.sha256 == sha256(path)
    tables = split_reads(path, 3)  # with the file positions that it takes from the stats as it goes
    monkeypatch.setattr(reads_module, "_parse_plain", never_plain)
    assert split_reads(path, 3) == tables


# Bad records well after the first block (and past the 64 KiB that are sniffed): the exact path's
# message, and the reads before the bad one each yielded once, in file order.
BAD_AFTER_PLAIN = {
    "protein letters": (plain_fastq, b"@p\nMKVLAEFIPQ\n+\nIIIIIIIIII\n", "read 'p' (in or before record 3001) looks like a protein"),
    "a quality of the wrong length": (plain_fastq, b"@q\nACGT\n+\nIII\n", "FASTQ record 3001 (the one after read 'r2999'): Lengths"),
    "a trailing space on a quality": (plain_fastq, b"@q\nACGT\n+\nIII \n", "FASTQ record 3001 (the one after read 'r2999'): Lengths"),
    "a truncated fastq record": (plain_fastq, b"@q\nACGT\n", "FASTQ record 3001 (the one after read 'r2999'): End of file"),
    "a NUL byte": (plain_fasta, b">n\nAC\x00GT\n", "binary data (a NUL byte) at line 6002, in or after record 3000"),
    "a non-ASCII read id": (plain_fasta, b">r\xc3\xa9\nACGT\n", "record 3001: the read id 'r\xe9' is not ASCII"),
    "a FASTQ record in FASTA": (plain_fasta, b"@q\nACGT\n+\nIIII\n", "record 3001 (line 6001) is a FASTQ record"),
    "a header with no read id": (plain_fasta, b">\nACGT\n", "record 3001 has a header with no read id"),
}


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("case", BAD_AFTER_PLAIN)
def test_a_bad_record_after_plain_blocks_fails_as_in_the_exact_path(tmp_path, monkeypatch, exact_calls, case, compression):
    monkeypatch.setattr(reads_module, "_BLOCK_BYTES", 1000)
    good, bad, expected = BAD_AFTER_PLAIN[case]
    content = good(3000) + bad
    path = tmp_path / "reads"
    path.write_bytes(gzip.compress(content) if compression else content)
    messages, yielded = [], []
    for parse in (read_batches, parse_exactly):
        ids = []
        with pytest.raises(InputFormatError) as error:
            for batch in parse(path, ReadStats(), 50):
                ids.extend(batch.ids)
        messages.append(str(error.value))
        yielded.append(ids)
    assert len(exact_calls) == 1 and exact_calls[0] > 2900
    assert messages[0] == messages[1] and expected in messages[0] and messages[0].startswith(f"{path}: ")
    fast_ids, exact_ids = yielded
    assert fast_ids == [f"r{i}" for i in range(len(fast_ids))] and len(exact_ids) <= len(fast_ids) <= 3000


def test_a_truncated_gzip_after_plain_blocks_fails_as_in_the_exact_path(tmp_path, monkeypatch, exact_calls):
    monkeypatch.setattr(reads_module, "_BLOCK_BYTES", 1000)
    path = tmp_path / "cut.fq.gz"
    whole = gzip.compress(plain_fastq(3000))
    path.write_bytes(whole[: len(whole) // 2])
    messages = []
    for parse in (read_batches, parse_exactly):
        with pytest.raises(InputFormatError) as error:
            list(parse(path, ReadStats()))
        messages.append(str(error.value))
    assert messages[0] == messages[1] and messages[0].startswith(
        f"{path}: the gzip stream is truncated (the file was cut short) (after line"
    )
    assert len(exact_calls) == 1 and exact_calls[0] > 0


def test_splitting_reports_progress_every_so_many_reads_not_every_block(tmp_path, monkeypatch):
    from virnucpro_assets.sequences import sharding

    monkeypatch.setattr(reads_module, "_BLOCK_BYTES", 1000)
    monkeypatch.setattr(sharding, "PROGRESS_READS", 500)
    path = tmp_path / "reads.fasta"
    path.write_bytes(plain_fasta(2000))
    batches = len(list(read_batches(path, ReadStats())))
    reported = []
    split_reads(path, 3, progress=reported.append)
    assert batches > 20 and 3 <= len(reported) <= 4 and reported[-1] <= 2000
    assert all(later - earlier >= 500 for earlier, later in zip([0, *reported], reported))
