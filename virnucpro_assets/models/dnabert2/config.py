"""The fields of a DNABERT-2 config.json that the model uses."""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from virnucpro_assets.errors import ModelFormatError


@dataclass(frozen=True)
class DnabertConfig:
    """The fields of a Hugging Face DNABERT-2 config.json that the model uses.
    Defaults are those of the reference BertConfig, for keys a config.json may leave out."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    vocab_size: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    # Not used for padding: the real DNABERT-S config says 0, which is [UNK]; batches are padded with
    # the tokenizer's [PAD] id, and padded keys are masked anyway.
    pad_token_id: int = 0
    # The reference precomputes ALiBi for this many positions and extends it for longer inputs;
    # here the bias is built for each input's length, so any length works.
    alibi_starting_size: int = 512

    @classmethod
    def from_json(cls, path: Path) -> DnabertConfig:
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ModelFormatError(f"{path}: cannot read the model config: {error}") from error
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise ModelFormatError(f"{path}: model config lacks {', '.join(missing)}")
        config = cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})
        if config.hidden_size % config.num_attention_heads:
            raise ModelFormatError(
                f"{path}: hidden_size {config.hidden_size} is not a multiple of num_attention_heads {config.num_attention_heads}"
            )
        return config
