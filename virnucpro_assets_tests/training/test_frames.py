"""Training-frame selection against the original's rule, on GenBank records written by hand."""

import random

import pytest
from Bio.Data.CodonTable import unambiguous_dna_by_id

from virnucpro_assets.errors import InputFormatError
from virnucpro_assets.training.frames import training_frames
from virnucpro_assets.training.genbank import CdsFeature, read_genbank, write_genbank

TABLE = unambiguous_dna_by_id[1]
CODONS = {codon: amino for codon, amino in TABLE.forward_table.items()} | {stop: "*" for stop in TABLE.stop_codons}
SENSE = sorted(codon for codon in CODONS if CODONS[codon] != "*")


def revcomp(s):
    return s.translate(str.maketrans("ACGTacgt", "TGCAtgca"))[::-1]


def translate(s, offset):
    return "".join(CODONS.get(s[i : i + 3], "") for i in range(offset, len(s) - 2, 3))


def chunks(sequence, c):
    """The original's loop: starts every c letters, moved back by a running sum of the shift list."""
    n = -(-len(sequence) // c)
    surplus = n * c - len(sequence)
    lower = surplus // n
    k_up = surplus - lower * (n - 1)
    shifts = [lower + 1] * k_up + [lower] * (n - 1 - k_up) + [0]
    moved, out = 0, []
    for number, (a, shift) in enumerate(zip(range(0, len(sequence), c), shifts), start=1):
        start = a - moved if a > 1 else a
        out.append((number, sequence[start : start + c]))
        moved += shift
    return out


def original_rule(record_id, sequence, references, c):
    kept = []
    for number, chunk in chunks(sequence, c):
        chunk = chunk.upper()
        if any(letter in chunk for letter in "NRYMKSWHBVD"):
            continue
        strands = [(f"F{f + 1}", chunk, f) for f in range(3)] + [(f"R{r + 1}", revcomp(chunk), r) for r in range(3)]
        for label, strand, offset in strands:
            protein = translate(strand, offset)
            if protein and "*" not in protein and any(protein in ref for ref in references):
                kept.append((f"{record_id}_chunk_{number}{label}", strand[offset : offset + 1 + 3 * len(protein)], protein))
    return kept


def orf(rng, codons):
    return "".join(rng.choice(SENSE) for _ in range(codons))


@pytest.fixture
def genbank_file(tmp_path):
    rng = random.Random(8)
    forward = orf(rng, 230)  # 690 letters, one CDS on the forward strand
    reverse_orf = orf(rng, 180)
    reverse = revcomp(reverse_orf)  # the CDS on the reverse strand
    ambiguous = list(orf(rng, 300))
    ambiguous[450] = "N"  # drops chunk 2 of 3
    ambiguous[100] = "X"  # not an ambiguity letter: chunk 1 stays, the codon is dropped
    ambiguous[760] = "r"  # lower case, upper-cased first: drops chunk 3
    ambiguous = "".join(ambiguous)
    two = orf(rng, 110)
    records = [
        ("FWD.1", forward, [CdsFeature(0, 690, 1, translate(forward, 0))], "forward CDS"),
        ("REV.1", reverse, [CdsFeature(0, 540, -1, translate(reverse_orf, 0))], "reverse-strand CDS"),
        ("AMB.1", ambiguous, [CdsFeature(0, 900, 1, translate(ambiguous.upper(), 0))], "ambiguity letters"),
        # The first CDS is unrelated; the chunk's protein is a substring of the second, longer one.
        ("TWO.1", two[:300], [CdsFeature(0, 30, 1, "MKV"), CdsFeature(0, 330, 1, translate(two, 0))], "two CDS"),
        ("NONE.1", forward[:300], [], "no CDS: nothing kept"),
    ]
    path = tmp_path / "hand.gbff.gz"
    write_genbank(records, path)
    return path, records


def test_selection_follows_the_original_rule(genbank_file):
    path, written = genbank_file
    records = read_genbank(path)
    assert [r.record_id for r in records] == [r[0] for r in written]
    assert records[3].cds_proteins[1] == written[3][2][1].translation

    table, counts = training_frames(records, 300)
    expected = [row for r in records for row in original_rule(r.record_id, r.sequence, r.cds_proteins, 300)]
    got = list(zip(*(table.column(c).to_pylist() for c in ("pair_id", "nucleotide", "protein"))))
    assert got == expected
    kept = {pair for pair, _, _ in got}
    # 690 letters: chunks start at 0, 229 and 458, so the CDS is in frame F1, F3 and F2 of them.
    assert {"FWD.1_chunk_1F1", "FWD.1_chunk_2F3", "FWD.1_chunk_3F2"} <= kept
    assert {"REV.1_chunk_1R1", "REV.1_chunk_2R1"} <= kept  # 540 letters: [0,300) and [240,540)
    assert not any(p.startswith(("AMB.1_chunk_2", "AMB.1_chunk_3", "NONE.1")) for p in kept)
    assert "TWO.1_chunk_1F1" in kept
    assert counts.ambiguous_chunks == 2 and counts.kept_frames == len(expected)


def test_a_file_without_records_names_the_file(tmp_path):
    path = tmp_path / "empty.gbff"
    path.write_text("not genbank\n")
    with pytest.raises(InputFormatError, match="empty.gbff"):
        read_genbank(path)
