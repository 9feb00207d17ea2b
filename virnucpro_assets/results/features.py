"""Merged features: [DNABERT-S | ESM-2] per pair, joined by pair id, never by position alone."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from virnucpro_assets.errors import MissingInputError


def merge_features(pair_ids: pa.Array, dna: tuple[pa.Array, np.ndarray], protein: tuple[pa.Array, np.ndarray]) -> np.ndarray:
    """Rows of [dna | protein] in the order of `pair_ids`. Every pair must have exactly one vector
    of each kind; a missing or surplus partner is an error naming the identifier."""
    wanted = pair_ids.to_pylist()
    parts = []
    for label, (ids, vectors) in (("DNABERT-S", dna), ("ESM-2", protein)):
        have = ids.to_pylist()
        if have == wanted:
            parts.append(vectors)
            continue
        row_of = {pair_id: row for row, pair_id in enumerate(have)}
        missing = [pair_id for pair_id in wanted if pair_id not in row_of]
        surplus = sorted(set(have) - set(wanted))
        if missing or surplus or len(row_of) != len(have):
            problem = (
                f"no {label} embedding for pair {missing[0]!r} ({len(missing)} missing)"
                if missing
                else f"{label} embedding for unknown pair {surplus[0]!r}"
                if surplus
                else f"{label} embeddings repeat a pair id"
            )
            raise MissingInputError(f"{problem}: re-materialize that embedding shard")
        parts.append(vectors[[row_of[pair_id] for pair_id in wanted]])
    return np.hstack(parts).astype(np.float32, copy=False)
