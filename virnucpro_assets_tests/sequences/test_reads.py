import gzip

import pyarrow.parquet as pq
import pytest

from virnucpro_assets.errors import InputFormatError
from virnucpro_assets.sequences.reads import ReadStats, read_batches, sniff_format
from virnucpro_assets.sequences.sharding import write_read_shards


def read_all(path):
    stats = ReadStats()
    reads = [r for batch in read_batches(path, stats, batch_size=2) for r in zip(batch.ids, batch.sequences)]
    return reads, stats


def test_fasta_with_wrapped_lines_crlf_descriptions_and_lower_case(tmp_path):
    path = tmp_path / "a.fasta"
    path.write_bytes(b">r1 some description\r\nACGTac\r\ngtNN\r\n>r2\r\nTTTT\r\n\r\n>r3\tdesc\nRYKM\n")
    reads, stats = read_all(path)
    assert reads == [("r1", "ACGTacgtNN"), ("r2", "TTTT"), ("r3", "RYKM")]
    assert (stats.format, stats.compressed, stats.reads, stats.bases) == ("fasta", False, 3, 18)


def test_gzip_is_detected_from_content_not_extension(tmp_path):
    path = tmp_path / "reads.txt"
    path.write_bytes(gzip.compress(b"@q1 x\nACGT\n+\nIIII\n@q2\nGG\n+q2\n!!\n"))
    reads, stats = read_all(path)
    assert reads == [("q1", "ACGT"), ("q2", "GG")]
    assert (stats.format, stats.compressed) == ("fastq", True)


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
    outputs = [tmp_path / "out" / f"shard={k:03d}.parquet" for k in range(2)]
    with pytest.raises(InputFormatError) as error:
        write_read_shards(path, outputs)
    assert str(path) in str(error.value) and expected in str(error.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_truncated_gzip(tmp_path):
    path = tmp_path / "cut.fa.gz"
    whole = gzip.compress(b"".join(b">r%d\nACGTACGTAC\n" % i for i in range(5000)))
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputFormatError, match="truncated"):
        read_all(path)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(InputFormatError, match="no such file"):
        sniff_format(tmp_path / "nope.fa")
    with pytest.raises(InputFormatError, match="is a directory"):
        sniff_format(tmp_path)


def test_shards_are_deterministic_balanced_and_in_file_order(tmp_path):
    path = tmp_path / "r.fa"
    path.write_text("".join(f">r{i}\n{'ACGT'[i % 4] * (i + 1)}\n" for i in range(10)))
    outputs = [tmp_path / "out" / f"shard={k:03d}.parquet" for k in range(3)]
    stats = write_read_shards(path, outputs)
    shards = [pq.read_table(p).column("read_id").to_pylist() for p in outputs]
    assert shards == [["r0", "r3", "r6", "r9"], ["r1", "r4", "r7"], ["r2", "r5", "r8"]]
    assert stats.reads == 10
    first = [p.read_bytes() for p in outputs]
    write_read_shards(path, outputs)
    assert [p.read_bytes() for p in outputs] == first


def test_invalid_file_leaves_no_shard_and_keeps_old_ones(tmp_path):
    outputs = [tmp_path / "out" / f"shard={k:03d}.parquet" for k in range(2)]
    good = tmp_path / "good.fa"
    good.write_text(">a\nACGT\n>b\nGGCC\n")
    write_read_shards(good, outputs)
    before = [p.read_bytes() for p in outputs]
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGT\n>b\nGGCC\n>a\nTT\n")
    with pytest.raises(InputFormatError):
        write_read_shards(bad, outputs)
    assert [p.read_bytes() for p in outputs] == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["shard=000.parquet", "shard=001.parquet"]
