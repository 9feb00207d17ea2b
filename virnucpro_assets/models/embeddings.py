"""The result both embedding models return."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Embeddings:
    vectors: np.ndarray  # float32 [N, dim], in input order
    tokens: int  # tokens fed to the model, padding excluded
