import pytest

from benchmarks.original import process_reads
from virnucpro_assets.sequences.translation import COLUMNS, translate_reads


def pairs(reads, c=300):
    table = translate_reads([r for r, _ in reads], [s for _, s in reads], c)
    assert table.column_names == list(COLUMNS)
    return [tuple(row[k] for k in ("pair_id", "nucleotide", "protein", "frame")) for row in table.to_pylist()]


def test_all_six_frames_of_a_hand_worked_chunk():
    # ATGGCC: F1 ATG GCC=MA, F2 TGG=W, F3 GGC=G; reverse complement GGCCAT: R1 GGC CAT=GH,
    # R2 GCC=A, R3 CCA=P. Nucleotides are strand[f-1 : f+3m], one letter past the codons, clipped.
    assert pairs([("r", "ATGGCC")]) == [
        ("r_chunk_1F1", "ATGGCC", "MA", "F1"),
        ("r_chunk_1F2", "TGGC", "W", "F2"),
        ("r_chunk_1F3", "GGCC", "G", "F3"),
        ("r_chunk_1R1", "GGCCAT", "GH", "R1"),
        ("r_chunk_1R2", "GCCA", "A", "R2"),
        ("r_chunk_1R3", "CCAT", "P", "R3"),
    ]


def test_frames_with_a_stop_or_no_codon_are_dropped():
    # TAA: F1 is '*', F2/F3 have no full codon; reverse complement TTA gives L.
    assert pairs([("r", "TAA")]) == [("r_chunk_1R1", "TTA", "L", "R1")]
    assert pairs([("r", "AC")]) == []


def test_codons_with_n_or_ambiguity_letters_are_dropped_not_x():
    # F1 of ATGNNNGCC: ATG, NNN (dropped), GCC -> "MA", so m=2 and the nucleotide is s[0:7].
    table = dict((p[0], p[1:3]) for p in pairs([("r", "ATGNNNGCC")]))
    assert table["r_chunk_1F1"] == ("ATGNNNG", "MA")
    # R and Y are complemented to themselves (only ACGT are), and their codons vanish too.
    table = dict((p[0], p[1:3]) for p in pairs([("r", "ATGRYAGCC")]))
    assert table["r_chunk_1F1"] == ("ATGRYAG", "MA")


def test_lower_case_is_translated_and_written_upper_case():
    assert pairs([("r", "atggcc")]) == pairs([("r", "ATGGCC")])


def test_long_reads_are_chunked_with_ids_per_chunk():
    ids = [p[0] for p in pairs([("read7", "ATG" * 199 + "GCC")], c=300)]
    assert {i.split("_chunk_")[1][0] for i in ids} == {"1", "2"}
    assert ids == sorted(ids, key=lambda i: (i[:-2], ["F1", "F2", "F3", "R1", "R2", "R3"].index(i[-2:])))


def test_empty_shard():
    assert pairs([]) == []


@pytest.mark.parametrize("c", [300, 500])
def test_identical_to_the_original_on_real_genome_reads(genome_reads, c):
    rng_reads = [
        (rid, seq.lower() if i % 7 == 0 else seq[:50] + "N" * 5 + seq[55:] if i % 5 == 0 else seq)
        for i, (rid, seq) in enumerate(genome_reads)
    ]
    expected = process_reads(rng_reads, c)
    assert len(expected) > 500
    assert [p[:3] for p in pairs(rng_reads, c)] == expected
