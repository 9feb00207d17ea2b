"""DNABERT-2 re-implementation against the golden data of the reference code (data/dnabert2_tiny/README.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from virnucpro_assets.errors import ModelFormatError, ModelNotFoundError
from virnucpro_assets.models.dnabert2 import (
    DnabertEmbedder,
    DnabertModel,
    alibi_slopes,
    load_dnabert_model,
    resolve_dnabert_source,
)
from virnucpro_assets.models.identity import hash_files

GOLDEN = Path(__file__).parent.parent / "data" / "dnabert2_tiny"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "expected.safetensors")


@pytest.fixture(scope="module")
def sequences() -> list[str]:
    lines = (GOLDEN / "inputs.fasta").read_text().splitlines()
    return [line for line in lines if line and not line.startswith(">")]


@pytest.fixture(scope="module")
def embedder() -> DnabertEmbedder:
    return DnabertEmbedder.from_source(str(GOLDEN))


def golden_copy(tmp_path: Path) -> Path:
    """A writable copy of the golden model folder (model files only)."""
    folder = tmp_path / "model"
    folder.mkdir()
    model_files = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
    for name in model_files:
        shutil.copy(GOLDEN / name, folder / name)
    return folder


def one_at_a_time(model: DnabertModel, token_ids: list[list[int]]) -> np.ndarray:
    """The original's path: one unpadded sequence per call, no attention mask, plain mean over all tokens."""
    with torch.inference_mode():
        return np.stack([model(torch.tensor([ids]))[0].mean(dim=0).numpy() for ids in token_ids])


def max_diff(actual, wanted) -> float:
    return float(np.abs(np.asarray(actual) - np.asarray(wanted)).max())


def test_token_ids_match_golden(embedder, sequences, expected):
    token_ids = embedder.tokenize(sequences)
    assert len(token_ids) == 40
    for i, ids in enumerate(token_ids):
        assert ids == expected[f"ids_{i}"].tolist(), f"seq_{i:02d}"
    assert len(token_ids[3]) == 522  # longer than 512: not truncated


def test_token_ids_match_transformers_autotokenizer(embedder, sequences):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(GOLDEN))
    assert embedder.tokenize(sequences) == reference(sequences)["input_ids"]


def test_one_at_a_time_mean_and_pooler_match_golden(embedder, sequences, expected):
    token_ids = embedder.tokenize(sequences)
    assert max_diff(one_at_a_time(embedder.model, token_ids), expected["mean_hidden"]) <= TOLERANCE

    with torch.inference_mode():
        pooled = np.stack([embedder.model.pool(embedder.model(torch.tensor([ids])))[0].numpy() for ids in token_ids])
    assert max_diff(pooled, expected["pooled_output"]) <= TOLERANCE


# 1: one sequence per batch; 64 and 600: many batches of mixed lengths;
# 5220: seq_03 (522 tokens) batched with nine sequences of at most 109 tokens, so mostly padding.
@pytest.mark.parametrize("token_budget", [1, 64, 600, 5220])
def test_batched_embed_matches_one_at_a_time(embedder, sequences, expected, token_budget):
    result = embedder.embed(sequences, token_budget=token_budget)
    assert result.vectors.dtype == np.float32
    assert result.vectors.shape == (40, 96)
    assert max_diff(result.vectors, expected["mean_hidden"]) <= TOLERANCE
    assert result.tokens == int(expected["num_tokens"].sum())


def test_embed_of_nothing_is_empty(embedder):
    result = embedder.embed([])
    assert result.vectors.shape == (0, embedder.dim)
    assert result.tokens == 0


def test_stress_scaled_weights(sequences, expected):
    embedder = DnabertEmbedder.from_source(str(GOLDEN))
    with torch.no_grad():
        for layer in embedder.model.encoder.layer:
            scaled = (layer.attention.self.Wqkv, layer.attention.output.dense, layer.mlp.gated_layers, layer.mlp.wo)
            for linear in scaled:
                linear.weight.mul_(4.0)
    token_ids = embedder.tokenize(sequences)
    assert max_diff(one_at_a_time(embedder.model, token_ids), expected["stress_x4_mean_hidden"]) <= TOLERANCE
    assert max_diff(embedder.embed(sequences, token_budget=600).vectors, expected["stress_x4_mean_hidden"]) <= TOLERANCE


def test_layer_outputs_match_golden_debug_tensors(embedder, sequences, expected):
    model = embedder.model
    captured = {}

    def keep(name):
        return lambda module, inputs, output: captured.__setitem__(name, output[0].numpy())

    hooks = [model.embeddings.register_forward_hook(keep("debug_embedding_output"))]
    for number, layer in enumerate(model.encoder.layer):
        hooks.append(layer.attention.register_forward_hook(keep(f"debug_layer{number}_attention_output")))
        hooks.append(layer.register_forward_hook(keep(f"debug_layer{number}_output")))
    try:
        one_at_a_time(model, embedder.tokenize([sequences[5]]))
    finally:
        for hook in hooks:
            hook.remove()

    assert len(captured) == 5
    for name, actual in captured.items():
        assert actual.shape == (62, 96)
        assert max_diff(actual, expected[name]) <= TOLERANCE, name


def test_alibi_slopes(expected):
    assert torch.equal(torch.tensor(alibi_slopes(12), dtype=torch.float32), expected["alibi_slopes"])
    assert alibi_slopes(8) == [2.0**-k for k in range(1, 9)]


@pytest.mark.parametrize("length", [5, 8, 13])
def test_attention_bias_rows_are_aligned_and_hold_alibi_and_the_padding(length):
    from virnucpro_assets.models.dnabert2.architecture import BIAS_ALIGNMENT, attention_bias

    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, length - 2 :] = False
    bias = attention_bias(mask, 4, torch.float32)
    assert bias.shape == (2, 4, length, length) and bias.stride(-2) % BIAS_ALIGNMENT == 0
    distance = (torch.arange(length)[None] - torch.arange(length)[:, None]).abs()
    slopes = torch.tensor(alibi_slopes(4))
    torch.testing.assert_close(bias[0], -slopes[:, None, None] * distance, rtol=0, atol=0)
    assert torch.isinf(bias[1, :, :, length - 2 :]).all() and torch.equal(bias[1, :, :, : length - 2], bias[0, :, :, : length - 2])


def test_bert_prefixed_checkpoint_with_mlm_head_loads(tmp_path, sequences, expected):
    folder = golden_copy(tmp_path)
    state = load_file(folder / "model.safetensors")
    renamed = {f"bert.{name}": tensor for name, tensor in state.items()}
    renamed["cls.predictions.bias"] = torch.zeros(4096)
    renamed["cls.predictions.transform.dense.weight"] = torch.zeros(96, 96)
    save_file(renamed, folder / "model.safetensors")

    prefixed = DnabertEmbedder.from_source(str(folder))
    assert max_diff(prefixed.embed(sequences, token_budget=600).vectors, expected["mean_hidden"]) <= TOLERANCE


def test_checkpoint_without_pooler_loads(tmp_path, sequences, expected):
    folder = golden_copy(tmp_path)
    state = load_file(folder / "model.safetensors")
    without = {name: tensor for name, tensor in state.items() if not name.startswith("pooler.")}
    save_file(without, folder / "model.safetensors")

    without_pooler = DnabertEmbedder.from_source(str(folder))
    assert without_pooler.model.pooler is None
    assert max_diff(without_pooler.embed(sequences, token_budget=600).vectors, expected["mean_hidden"]) <= TOLERANCE


def test_pytorch_model_bin_loads(tmp_path, sequences, expected):
    folder = golden_copy(tmp_path)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()

    from_bin = DnabertEmbedder.from_source(str(folder))
    assert from_bin.identity.content_hash == hash_files([folder / "pytorch_model.bin"])
    assert max_diff(from_bin.embed(sequences, token_budget=600).vectors, expected["mean_hidden"]) <= TOLERANCE


def test_pickled_objects_in_bin_are_refused(tmp_path):
    folder = golden_copy(tmp_path)
    (folder / "model.safetensors").unlink()
    torch.save({"weights": load_file(GOLDEN / "model.safetensors"), "note": object()}, folder / "pytorch_model.bin")
    with pytest.raises(ModelFormatError, match="pytorch_model.bin"):
        load_dnabert_model(folder)


def test_unexpected_weight_is_named(tmp_path):
    folder = golden_copy(tmp_path)
    state = load_file(folder / "model.safetensors")
    state["encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(4)
    save_file(state, folder / "model.safetensors")
    expected_message = r"unexpected: encoder\.layer\.0\.attention\.self\.rotary\.weight"
    with pytest.raises(ModelFormatError, match=expected_message) as raised:
        load_dnabert_model(folder)
    assert "model.safetensors" in str(raised.value)


def test_missing_weight_is_named(tmp_path):
    folder = golden_copy(tmp_path)
    state = load_file(folder / "model.safetensors")
    del state["encoder.layer.1.mlp.wo.bias"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ModelFormatError, match=r"missing: encoder\.layer\.1\.mlp\.wo\.bias") as raised:
        load_dnabert_model(folder)
    assert "model.safetensors" in str(raised.value)


def test_weight_of_wrong_shape_is_named(tmp_path):
    folder = golden_copy(tmp_path)
    state = load_file(folder / "model.safetensors")
    state["pooler.dense.bias"] = torch.zeros(95)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ModelFormatError, match=r"wrong shape: pooler\.dense\.bias \[95\]"):
        load_dnabert_model(folder)


@pytest.mark.parametrize("missing", ["config.json", "tokenizer.json"])
def test_missing_file_is_named(tmp_path, missing):
    folder = golden_copy(tmp_path)
    (folder / missing).unlink()
    with pytest.raises(ModelNotFoundError, match=missing):
        DnabertEmbedder.from_source(str(folder))


def test_missing_weights_name_both_formats(tmp_path):
    folder = golden_copy(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match=r"model\.safetensors or pytorch_model\.bin"):
        DnabertEmbedder.from_source(str(folder))


def test_missing_directory_says_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    import huggingface_hub

    def offline(repo_id, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline and not in the cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    absent = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError) as raised:
        resolve_dnabert_source(str(absent))
    message = str(raised.value)
    assert str(absent) in message
    assert "Hugging Face cache" in message
    assert "config.json" in message and "tokenizer.json" in message
    assert "network access" in message


def test_hub_download_fetches_no_code(tmp_path, monkeypatch):
    import fnmatch

    import huggingface_hub

    calls = []

    def fake_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    assert resolve_dnabert_source("zhihan1996/DNABERT-S") == tmp_path
    [(repo_id, kwargs)] = calls
    assert repo_id == "zhihan1996/DNABERT-S"
    patterns = kwargs["allow_patterns"]
    for code_file in ("bert_layers.py", "configuration_bert.py", "flash_attn_triton.py"):
        assert not any(fnmatch.fnmatch(code_file, pattern) for pattern in patterns)
    for wanted in ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json"):
        assert any(fnmatch.fnmatch(wanted, pattern) for pattern in patterns)


def test_identity_is_the_weight_file_hash_and_follows_the_weights(tmp_path, embedder):
    assert embedder.identity.name == "dnabert2_tiny"
    assert embedder.identity.content_hash == hash_files([GOLDEN / "model.safetensors"])

    folder = golden_copy(tmp_path)
    state = load_file(folder / "model.safetensors")
    state["pooler.dense.bias"] = state["pooler.dense.bias"] + 1
    save_file(state, folder / "model.safetensors")
    changed = DnabertEmbedder.from_source(str(folder))
    assert changed.identity.content_hash != embedder.identity.content_hash


def test_out_of_memory_splits_the_batch(monkeypatch, sequences, expected):
    embedder = DnabertEmbedder.from_source(str(GOLDEN))
    model = embedder.model
    batch_sizes = []

    def small_memory(input_ids, attention_mask):
        batch_sizes.append(input_ids.shape[0])
        if input_ids.shape[0] > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return model(input_ids, attention_mask)

    monkeypatch.setattr(embedder, "model", small_memory)
    result = embedder.embed(sequences, token_budget=5220)
    assert batch_sizes[:7] == [10, 5, 2, 3, 5, 2, 3]  # seq_03's batch of 10, halved until it fits
    assert max_diff(result.vectors, expected["mean_hidden"]) <= TOLERANCE


def test_out_of_memory_on_a_single_sequence_is_raised(monkeypatch, sequences):
    embedder = DnabertEmbedder.from_source(str(GOLDEN))

    def no_memory(input_ids, attention_mask):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(embedder, "model", no_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        embedder.embed(sequences[:2])


def test_non_finite_half_precision_rows_are_redone_in_float32(embedder, sequences, expected):
    half = DnabertEmbedder.from_source(str(GOLDEN), dtype=torch.bfloat16)
    assert half.model.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    unk_id = 0
    with torch.no_grad():
        half.model.embeddings.word_embeddings.weight[unk_id] = float("nan")  # poisons reads with an N
    token_ids = half.tokenize(sequences)
    poisoned = np.array([unk_id in ids for ids in token_ids])
    assert 0 < poisoned.sum() < len(sequences)

    vectors = half.embed(sequences, token_budget=600).vectors
    assert np.isfinite(vectors).all()
    assert max_diff(vectors[poisoned], expected["mean_hidden"][poisoned]) <= TOLERANCE
    assert max_diff(vectors[~poisoned], expected["mean_hidden"][~poisoned]) <= 0.1  # bfloat16 rounding
