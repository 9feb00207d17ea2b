"""`virnucpro-assets compare-precision` on the CPU with tiny models in the real formats."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from virnucpro_assets.cli import main
from virnucpro_assets.demo.models import write_tiny_esm2_checkpoint
from virnucpro_assets.sequences.translation import translate_reads

GOLDEN_DNABERT = Path(__file__).parent.parent / "data" / "dnabert2_tiny"
REPORT = re.compile(
    r"^(\w+) \((.+)\): (fp16|bf16) vs fp32 on (\d+) sequences: min cosine ([\d.]+), mean cosine ([\d.]+), max abs diff (\S+)$"
)


@pytest.fixture(scope="module")
def esm2_checkpoint(tmp_path_factory) -> Path:
    return write_tiny_esm2_checkpoint(tmp_path_factory.mktemp("esm2") / "esm2_t2_tiny.pt")


@pytest.fixture
def reads(genome_reads) -> list[tuple[str, str]]:
    return [read for read in genome_reads if len(read[1]) in (150, 300, 500)][:12]


def compare(capsys, *arguments) -> dict[str, tuple]:
    assert main(["compare-precision", *map(str, arguments)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    matches = [REPORT.match(line) for line in lines]
    assert all(matches), lines
    return {m[1]: (m[2], m[3], int(m[4]), float(m[5]), float(m[6]), float(m[7])) for m in matches}


def assert_close_agreement(row, precision: str, count: int) -> None:
    _, shown_precision, sequences, min_cosine, mean_cosine, max_abs_diff = row
    assert (shown_precision, sequences) == (precision, count)
    assert 0.99 < min_cosine <= mean_cosine <= 1.0
    assert 0 < max_abs_diff < 0.5  # half precision differs, a little


def test_nucleotide_fasta_compares_both_models_on_the_kept_frames(tmp_path, capsys, reads, esm2_checkpoint):
    fasta = tmp_path / "reads.fasta"
    fasta.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in reads))
    pairs = translate_reads([n for n, _ in reads], [s for _, s in reads], 500).num_rows

    rows = compare(capsys, fasta, "--esm2", esm2_checkpoint, "--dnabert", GOLDEN_DNABERT, "--precision", "bf16", "--device", "cpu")

    assert set(rows) == {"dnabert", "esm2"}
    assert rows["esm2"][0] == "esm2_t2_tiny"
    for row in rows.values():
        assert_close_agreement(row, "bf16", pairs)


def test_translated_proteins_parquet_and_a_limit(tmp_path, capsys, reads, esm2_checkpoint):
    table = translate_reads([n for n, _ in reads], [s for _, s in reads], 500)
    pq.write_table(table, tmp_path / "shard=000.parquet")

    rows = compare(capsys, tmp_path / "shard=000.parquet", "--esm2", esm2_checkpoint, "--only", "esm2", "--limit", 5, "--device", "cpu")

    assert set(rows) == {"esm2"}
    assert_close_agreement(rows["esm2"], "fp16", 5)


def test_protein_fasta_compares_esm2_only(tmp_path, capsys, esm2_checkpoint):
    fasta = tmp_path / "proteins.fasta"
    fasta.write_text(">a\nMKTAYIAKQRQISFVKSHFSRQ\n>b\nWWDEFGHIKLMNPQRSTVWY\n")

    rows = compare(capsys, fasta, "--esm2", esm2_checkpoint, "--dnabert", GOLDEN_DNABERT, "--device", "cpu")

    assert set(rows) == {"esm2"}
    assert_close_agreement(rows["esm2"], "fp16", 2)


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    fasta = tmp_path / "proteins.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n")
    assert main(["compare-precision", str(fasta), "--esm2", str(tmp_path / "none.pt"), "--device", "cpu"]) == 1
    assert "none.pt does not exist" in capsys.readouterr().err
