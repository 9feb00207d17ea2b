import numpy as np
import pytest

from benchmarks.original import split_into_chunks
from virnucpro_assets.sequences.chunking import chunk_layout


def windows(length, c):
    _, numbers, starts = chunk_layout(np.array([length]), c)
    return [(int(s), min(int(s) + c, length)) for s in starts], numbers.tolist()


def test_shorter_than_chunk_is_one_whole_chunk():
    assert windows(150, 300)[0] == [(0, 150)]
    assert windows(1, 500)[0] == [(0, 1)]


def test_exact_multiples_give_disjoint_chunks():
    assert windows(900, 300)[0] == [(0, 300), (300, 600), (600, 900)]
    assert windows(500, 500)[0] == [(0, 500)]


def test_doc_example_301_over_300():
    # The algorithm page: "for L=301, c=300: chunks [0,300) and [150,301)".
    assert windows(301, 300)[0] == [(0, 300), (150, 301)]


def test_k_up_larger_than_n_minus_1_leaves_a_short_last_chunk():
    # L=1000, c=300: n=4, R=200, lower=50, upper=51, k_up=200-150=50 > 3: every shift is 51.
    assert windows(1000, 300)[0] == [(0, 300), (249, 549), (498, 798), (747, 1000)]


def test_small_surplus_spreads_lower_and_upper_shifts():
    # L=599, c=300: n=2, R=1, lower=0, upper=1, k_up=1: shift list [1, 0].
    assert windows(599, 300)[0] == [(0, 300), (299, 599)]
    # L=1199, c=300: n=4, R=1, lower=0, upper=1, k_up=1: shifts [1, 0, 0, 0].
    assert windows(1199, 300)[0] == [(0, 300), (299, 599), (599, 899), (899, 1199)]


def test_chunk_numbers_and_read_index_follow_input_order():
    reads, numbers, _ = chunk_layout(np.array([10, 650, 3]), 300)
    assert reads.tolist() == [0, 1, 1, 1, 2]
    assert numbers.tolist() == [0, 0, 1, 2, 0]


@pytest.mark.parametrize("c", [300, 500])
def test_matches_the_original_loop_for_every_length_up_to_four_chunks(c):
    lengths = np.arange(1, 4 * c + 2)
    read_index, numbers, starts = chunk_layout(lengths, c)
    sequence = "".join(chr(65 + i % 26) for i in range(4 * c + 2))
    for read in range(lengths.size):
        length = int(lengths[read])
        mine = [sequence[s : s + c][: max(0, length - s)] for s in starts[read_index == read]]
        assert mine == [chunk for _, chunk in split_into_chunks("r", sequence[:length], c)]


def test_properties_for_random_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 5000, size=2000)
    read_index, numbers, starts = chunk_layout(lengths, 500)
    counts = np.bincount(read_index, minlength=lengths.size)
    assert (counts == -(-lengths // 500)).all()
    assert (starts[numbers == 0] == 0).all()
    ends = np.minimum(starts + 500, lengths[read_index])
    last = np.r_[numbers[1:] == 0, True]
    assert (ends[last] == lengths).all()  # the last chunk reaches the end of its read
    assert (starts >= 0).all() and (ends > starts).all()
