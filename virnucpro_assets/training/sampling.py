"""Class sampling as features_extract.py does it.

The original splits each genome file's kept pairs into files of 10,000 consecutive pairs and
keeps only full ones (a file's last, partial block is dropped). Every viral block is used; for
the other class it draws, with `random.seed(42)`, ceil(V / 7) blocks from each of its seven
kingdoms (V = the number of viral blocks) and then V blocks from those, so both classes have V
blocks. Here the kingdoms are the groups the genome files were registered with, however many there
are; where a group (or all of them together) has fewer blocks than asked for, all are taken (the
original stops with an error from random.sample).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

ORIGINAL_BLOCK_SIZE = 10_000
ORIGINAL_SEED = 42


@dataclass(frozen=True)
class Sampled:
    rows: np.ndarray  # indices into the pairs, in training order: viral blocks, then the others
    viral_blocks: int
    other_blocks: int
    blocks_by_group: dict[str, int]


def sample_classes(
    labels: np.ndarray, sources: np.ndarray, groups: np.ndarray, block_size: int = ORIGINAL_BLOCK_SIZE, seed: int = ORIGINAL_SEED
) -> Sampled:
    """Choose the training rows. Pairs must come in training-set order (file, record, chunk,
    frame); `sources` names each pair's file and `groups` its group (for viral pairs, ignored).

    Order of the result, like train.py's file list: viral blocks in file order, then the chosen
    other blocks sorted by group, file and position (train.py sorts folder and file names)."""
    if block_size < 1:
        raise ValueError(f"block size must be at least 1, got {block_size}")
    blocks = _full_blocks(sources, block_size)
    viral = [b for b in blocks if labels[b[0]] == 1]
    others: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for block in blocks:
        if labels[block[0]] != 1:
            others[str(groups[block[0]])].append(block)

    rng = random.Random(seed)
    per_group = math.ceil(len(viral) / len(others)) if others else 0
    drawn: list[tuple[int, int]] = []
    for group in others:  # in the order the groups first appear, as the original's fixed kingdom order
        drawn.extend(rng.sample(others[group], min(per_group, len(others[group]))))
    chosen = rng.sample(drawn, min(len(viral), len(drawn)))
    chosen.sort(key=lambda block: (str(groups[block[0]]), block[0]))
    by_group: dict[str, int] = defaultdict(int)
    for block in chosen:
        by_group[str(groups[block[0]])] += 1
    starts = [start for start, _ in viral + chosen]
    rows = (np.concatenate([np.arange(s, s + block_size) for s in starts]) if starts else np.zeros(0)).astype(np.int64)
    return Sampled(rows=rows, viral_blocks=len(viral), other_blocks=len(chosen), blocks_by_group=dict(by_group))


def _full_blocks(sources: np.ndarray, block_size: int) -> list[tuple[int, int]]:
    """(start row, source) of every full block of consecutive pairs within one source."""
    blocks = []
    boundaries = np.flatnonzero(np.concatenate([[True], sources[1:] != sources[:-1], [True]])) if len(sources) else [0]
    for begin, end in zip(boundaries[:-1], boundaries[1:]):
        blocks.extend((start, int(begin)) for start in range(int(begin), int(end) - block_size + 1, block_size))
    return blocks
