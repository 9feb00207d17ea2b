import json
import pickle
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from virnucpro_assets.demo.models import write_demo_classifier
from virnucpro_assets.errors import ConfigurationError, ModelFormatError, ModelNotFoundError
from virnucpro_assets.models.classifier import (
    Classifier,
    ClassifierWeights,
    convert_classifier,
    load_classifier,
    save_classifier,
)
from virnucpro_assets.models.identity import ModelIdentity

# Written the way the original's train.py defines and saves its model: the class lives in the
# script's __main__, and torch.save pickles the whole module. Its eval-mode softmax is the reference.
TRAINING_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn


    class MLPClassifier(nn.Module):
        def __init__(self, input_dim, hidden_dim, num_class):
            super(MLPClassifier, self).__init__()
            self.hidden_layer = nn.Linear(input_dim, hidden_dim)
            self.batch_norm = nn.BatchNorm1d(hidden_dim)
            self.relu = nn.ReLU()
            self.dropout = nn.Dropout(0.5)
            self.output_layer = nn.Linear(hidden_dim, num_class)

        def forward(self, x):
            x = self.hidden_layer(x)
            x = self.batch_norm(x)
            x = self.relu(x)
            x = self.dropout(x)
            return self.output_layer(x)


    torch.manual_seed(3)
    model = MLPClassifier(3328, 512, 2)
    model.train()
    with torch.no_grad():
        for _ in range(5):  # training batches move BatchNorm's running statistics off 0 and 1
            model(torch.randn(64, 3328) * 0.7 + 0.2)
    model.eval()
    torch.save(model, "500_model.pth")
    torch.save(model.state_dict(), "state_dict.pth")

    # 256 rows: one full scoring block of the loader, so both sides run the same CPU matrix
    # kernels (with other row counts fp32 sums may differ in their last bits).
    features = torch.randn(256, 3328)
    with torch.no_grad():
        probabilities = F.softmax(model(features), dim=1)
    _, predicted = torch.max(probabilities.data, 1)
    np.save("features.npy", features.numpy())
    np.save("scores.npy", probabilities.numpy())
    np.save("predicted.npy", predicted.numpy())
    """
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A directory holding the script's 500_model.pth, state_dict.pth and reference outputs."""
    directory = tmp_path_factory.mktemp("trained")
    (directory / "train.py").write_text(TRAINING_SCRIPT)
    subprocess.run([sys.executable, "train.py"], cwd=directory, check=True, capture_output=True, timeout=120)
    return directory


def reference(trained):
    labels = np.array(["others", "virus"])
    return (
        np.load(trained / "features.npy"),
        np.load(trained / "scores.npy"),
        list(labels[np.load(trained / "predicted.npy")]),
    )


def test_legacy_pickled_module_scores_like_the_original_model(trained):
    features, expected_scores, expected_predictions = reference(trained)
    classifier = load_classifier(trained / "500_model.pth")

    scores, predictions = classifier.score(features)

    assert scores.dtype == np.float32 and scores.shape == (256, 2)
    assert np.abs(scores - expected_scores).max() <= 1e-6
    assert predictions == expected_predictions
    assert set(predictions) == {"virus", "others"}  # the comparison exercised both outcomes
    assert classifier.chunk_length == 500
    assert classifier.identity.name == "500_model.pth" and len(classifier.identity.content_hash) == 64


def test_scores_do_not_depend_on_how_many_rows_are_scored_together(trained):
    features, _, _ = reference(trained)
    classifier = load_classifier(trained / "500_model.pth")
    together, _ = classifier.score(features)
    one_by_one = np.concatenate([classifier.score(features[i : i + 1])[0] for i in range(0, 256, 64)])
    assert np.array_equal(one_by_one, together[::64])
    assert np.array_equal(classifier.score(features[5:260])[0], together[5:])


def test_plain_state_dict_is_accepted(trained):
    features, expected_scores, _ = reference(trained)
    classifier = load_classifier(trained / "state_dict.pth", chunk_length=500)
    assert np.abs(classifier.score(features)[0] - expected_scores).max() <= 1e-6


def test_native_round_trip_gives_identical_scores(trained, tmp_path):
    features, _, _ = reference(trained)
    legacy = load_classifier(trained / "500_model.pth")

    save_classifier(legacy, tmp_path / "virnucpro_500.safetensors", description="test copy")
    native = load_classifier(tmp_path / "virnucpro_500.safetensors")

    assert np.array_equal(native.score(features)[0], legacy.score(features)[0])
    assert native.chunk_length == 500
    assert native.identity.name == "virnucpro_500.safetensors"
    assert native.identity.content_hash != legacy.identity.content_hash
    sidecar = json.loads((tmp_path / "virnucpro_500.json").read_text())
    assert sidecar["format_version"] == 1 and sidecar["chunk_length"] == 500
    assert sidecar["description"] == "test copy"
    assert [layer["type"] for layer in sidecar["layers"]] == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    # The JSON path names the same classifier.
    assert load_classifier(tmp_path / "virnucpro_500.json").identity == native.identity


def test_convert_records_the_source(trained, tmp_path):
    shutil.copy(trained / "500_model.pth", tmp_path / "classifier.pth")
    converted = convert_classifier(tmp_path / "classifier.pth", tmp_path / "converted.safetensors", chunk_length=300)
    assert converted.chunk_length == 300
    assert "converted from classifier.pth" in json.loads((tmp_path / "converted.json").read_text())["description"]


class _RunsShellCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


class _EvaluatesCode:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return eval, (self.code,)


def test_malicious_torch_save_file_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "marker"
    torch.save({"hidden_layer.weight": _RunsShellCommand(f"touch {marker}")}, tmp_path / "500_model.pth")

    with pytest.raises(ModelFormatError, match=r"refusing to load .*500_model\.pth: it asks to run (posix|os)\.system"):
        load_classifier(tmp_path / "500_model.pth")
    assert not marker.exists()


def test_malicious_pickle_of_any_protocol_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "marker"
    payload = pickle.dumps(_EvaluatesCode(f"open({str(marker)!r}, 'w').close()"), protocol=4)
    with zipfile.ZipFile(tmp_path / "500_model.pth", "w") as archive:
        archive.writestr("500_model/data.pkl", payload)
        archive.writestr("500_model/byteorder", "little")

    with pytest.raises(ModelFormatError, match=r"it asks to run builtins\.eval"):
        load_classifier(tmp_path / "500_model.pth")
    assert not marker.exists()

    pickle.loads(payload)  # the payload is real: unpickled the ordinary way, it runs
    assert marker.exists()


def test_a_hostile_file_cannot_alter_what_later_loads_use(trained, tmp_path):
    # Protocol 2 opcodes: GLOBAL torch.FloatStorage, then BUILD it with {"dtype": "poison"}.
    payload = b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x06\x00\x00\x00poisonsb."
    with zipfile.ZipFile(tmp_path / "500_model.pth", "w") as archive:
        archive.writestr("500_model/data.pkl", payload)

    with pytest.raises(ModelFormatError, match="holds a _StorageType"):
        load_classifier(tmp_path / "500_model.pth")
    assert load_classifier(trained / "500_model.pth").weights.hidden_weight.dtype == torch.float32


def test_file_with_other_layers_is_refused_with_what_was_found(tmp_path):
    wrong = nn.Sequential()
    wrong.add_module("hidden", nn.Linear(3328, 256))
    wrong.add_module("norm", nn.BatchNorm1d(256))
    wrong.add_module("out", nn.Linear(256, 2))
    torch.save(wrong.state_dict(), tmp_path / "500_model.pth")

    with pytest.raises(ModelFormatError, match=r"found hidden: weight 256x3328, bias 256; norm: .*; out: weight 2x256"):
        load_classifier(tmp_path / "500_model.pth")


def test_a_file_that_is_not_a_checkpoint_is_a_format_error(tmp_path):
    (tmp_path / "500_model.pth").write_text("not a checkpoint")
    with pytest.raises(ModelFormatError, match="not a torch.save checkpoint"):
        load_classifier(tmp_path / "500_model.pth")


def test_wrong_feature_width_is_a_clear_error(tmp_path):
    classifier = write_demo_classifier(tmp_path / "demo.safetensors", chunk_length=500, seed=1)
    with pytest.raises(ValueError, match=r"\[N, 3328\].*got shape \[3, 3000\]"):
        classifier.score(np.zeros((3, 3000), dtype=np.float32))
    with pytest.raises(ValueError, match="3328"):
        classifier.score(np.zeros(3328, dtype=np.float32))


def test_missing_files_name_the_path_and_how_to_provide_one(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"500_model\.pth does not exist.*300_model\.pth or 500_model\.pth"):
        load_classifier(tmp_path / "500_model.pth")

    write_demo_classifier(tmp_path / "demo.safetensors", chunk_length=500, seed=1)
    (tmp_path / "demo.json").unlink()
    with pytest.raises(ModelNotFoundError, match=r"demo\.json does not exist"):
        load_classifier(tmp_path / "demo.safetensors")


def test_chunk_length_comes_from_the_legacy_file_name_or_the_caller(trained, tmp_path):
    for name in ("300_model.pth", "classifier.pth"):
        shutil.copy(trained / "500_model.pth", tmp_path / name)

    assert load_classifier(tmp_path / "300_model.pth").chunk_length == 300
    assert load_classifier(tmp_path / "300_model.pth", chunk_length=300).chunk_length == 300
    with pytest.raises(ConfigurationError, match=r"300_model\.pth is a classifier for 300-letter chunks.*500 was"):
        load_classifier(tmp_path / "300_model.pth", chunk_length=500)

    with pytest.raises(ConfigurationError, match="cannot tell which chunk length"):
        load_classifier(tmp_path / "classifier.pth")
    assert load_classifier(tmp_path / "classifier.pth", chunk_length=500).chunk_length == 500
    with pytest.raises(ConfigurationError, match="300 and 500 only"):
        load_classifier(tmp_path / "classifier.pth", chunk_length=400)


def test_native_chunk_length_must_match_the_caller(tmp_path):
    write_demo_classifier(tmp_path / "demo.safetensors", chunk_length=300, seed=1)
    assert load_classifier(tmp_path / "demo.safetensors", chunk_length=300).chunk_length == 300
    with pytest.raises(ConfigurationError, match="300-letter chunks"):
        load_classifier(tmp_path / "demo.safetensors", chunk_length=500)


def test_demo_classifier_is_deterministic(tmp_path):
    first = write_demo_classifier(tmp_path / "a.safetensors", chunk_length=500, seed=5)
    again = write_demo_classifier(tmp_path / "b.safetensors", chunk_length=500, seed=5)
    other = write_demo_classifier(tmp_path / "c.safetensors", chunk_length=500, seed=6)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert (tmp_path / "a.safetensors").read_bytes() != (tmp_path / "c.safetensors").read_bytes()
    features = np.random.default_rng(0).standard_normal((20, 3328)).astype(np.float32)
    assert np.array_equal(first.score(features)[0], again.score(features)[0])
    assert not np.array_equal(first.score(features)[0], other.score(features)[0])
    assert "mean nothing biologically" in json.loads((tmp_path / "a.json").read_text())["description"]


def _classifier_with_output_bias(bias):
    zeros = torch.zeros(512)
    weights = ClassifierWeights(
        hidden_weight=torch.zeros(512, 3328),
        hidden_bias=zeros,
        norm_weight=torch.ones(512),
        norm_bias=zeros,
        norm_running_mean=zeros,
        norm_running_var=torch.ones(512),
        norm_eps=1e-5,
        output_weight=torch.zeros(2, 512),
        output_bias=torch.tensor(bias, dtype=torch.float32),
    )
    return Classifier(weights, 500, ModelIdentity("constant", "0" * 64))


def test_a_tie_in_the_softmax_goes_to_others():
    features = np.ones((2, 3328), dtype=np.float32)

    scores, predictions = _classifier_with_output_bias([0.25, 0.25]).score(features)
    assert scores.tolist() == [[0.5, 0.5]] * 2 and predictions == ["others"] * 2

    # The virus logit is larger, but both probabilities round to 0.5 in fp32: the original takes
    # the argmax of the softmax, not of the logits, so this is 'others' too.
    scores, predictions = _classifier_with_output_bias([0.0, 1e-9]).score(features)
    assert scores.tolist() == [[0.5, 0.5]] * 2 and predictions == ["others"] * 2

    _, predictions = _classifier_with_output_bias([0.0, 1e-3]).score(features)
    assert predictions == ["virus"] * 2


def test_scores_do_not_depend_on_torchs_thread_count(trained):
    """A Celery worker's forked child, a run's process and a bigger machine run torch with different
    thread counts; splitting one product among threads reorders its sums."""
    classifier = load_classifier(trained / "500_model.pth")
    features = np.random.default_rng(4).standard_normal((2000, classifier.feature_width), dtype=np.float32)
    threads = torch.get_num_threads()
    try:
        by_threads = {}
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            by_threads[count] = classifier.score(features)[0]
            assert torch.get_num_threads() == count  # put back as it was
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(by_threads[1], by_threads[2]) and np.array_equal(by_threads[1], by_threads[3])
