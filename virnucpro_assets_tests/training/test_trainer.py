"""The training loop against a reference written the way train.py is built (DataLoader over a
Subset, a module with its own forward, an EarlyStopping that keeps `state_dict()`), seeded."""

import contextlib
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from virnucpro_assets.training import trainer
from virnucpro_assets.training.metrics import auroc
from virnucpro_assets.training.trainer import TrainingConfig, split_rows, train

WIDTH = 24


class Reference(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(WIDTH, 512)
        self.norm = nn.BatchNorm1d(512)
        self.out = nn.Linear(512, 2)
        self.drop = nn.Dropout(0.5)
        nn.init.xavier_uniform_(self.hidden.weight)
        nn.init.xavier_uniform_(self.out.weight)

    def forward(self, x):
        return self.out(self.drop(F.relu(self.norm(self.hidden(x)))))


def reference_training(features, labels, seed, max_epochs):
    """train.py's procedure, with torch's global generator seeded first."""
    random.seed(42)
    dataset = TensorDataset(torch.from_numpy(features), torch.from_numpy(labels))
    indices = list(range(len(dataset)))
    split = int(len(dataset) * 0.1)
    random.shuffle(indices)
    torch.manual_seed(seed)
    model = Reference()
    train_loader = DataLoader(Subset(dataset, indices[split:]), batch_size=32, shuffle=True)
    test_loader = DataLoader(Subset(dataset, indices[:split]), batch_size=32, shuffle=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0002, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.85)
    best, best_state, counter = None, None, 0
    train_losses, test_losses = [], []
    for _ in range(max_epochs):
        model.train()
        running = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = nn.CrossEntropyLoss()(model(x), y)
            loss.backward()
            optimizer.step()
            running += loss.item()
        train_losses.append(running / len(train_loader))
        model.eval()
        total = 0.0
        with torch.no_grad():
            for x, y in test_loader:
                total += F.cross_entropy(model(x), y).item()
        test_loss = total / len(test_loader)
        test_losses.append(test_loss)
        stop = False
        if best is None:
            best, best_state = test_loss, model.state_dict()
        elif test_loss < best:
            best, best_state, counter = test_loss, model.state_dict(), 0
        else:
            counter += 1
            if counter >= 5:
                model.load_state_dict(best_state)  # aliases the live tensors, as in train.py
                stop = True
        if stop:
            break
        scheduler.step()
    return model, train_losses, test_losses


def data(rows, separable, seed=3):
    generator = np.random.default_rng(seed)
    labels = (generator.random(rows) < 0.5).astype(np.int64)
    features = generator.normal(size=(rows, WIDTH)).astype(np.float32)
    if separable:
        features[:, :4] += labels[:, None] * 0.8
    return features, labels


@pytest.mark.parametrize(("separable", "max_epochs"), [(True, 12), (False, 40)])
def test_loop_reproduces_the_reference_epoch_by_epoch(separable, max_epochs):
    features, labels = data(410, separable)  # 369 training rows: the last batch holds 17
    model, train_losses, test_losses = reference_training(features, labels, seed=5, max_epochs=max_epochs)
    result = train(features, labels, TrainingConfig(torch_seed=5, max_epochs=max_epochs))

    assert len(result.epochs) == len(train_losses)
    if not separable:  # random labels: the test loss stops improving and early stopping ends it
        assert result.stopped_early and len(result.epochs) < max_epochs
    np.testing.assert_allclose([e.train_loss for e in result.epochs], train_losses, rtol=1e-5)
    np.testing.assert_allclose([e.test.loss for e in result.epochs], test_losses, rtol=1e-5)
    reference = model.state_dict()
    weights = result.weights
    for mine, theirs in [
        (weights.hidden_weight, reference["hidden.weight"]),
        (weights.hidden_bias, reference["hidden.bias"]),
        (weights.norm_weight, reference["norm.weight"]),
        (weights.norm_running_mean, reference["norm.running_mean"]),
        (weights.norm_running_var, reference["norm.running_var"]),
        (weights.output_weight, reference["out.weight"]),
        (weights.output_bias, reference["out.bias"]),
    ]:
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    # train.py's "restored best weights" are the live ones: the model kept is the last epoch's.
    assert result.kept_epoch == len(result.epochs)


def test_restore_best_keeps_the_best_epoch():
    features, labels = data(410, separable=False)
    result = train(features, labels, TrainingConfig(torch_seed=5, max_epochs=40, restore_best=True))
    losses = [e.test.loss for e in result.epochs]
    assert result.stopped_early
    assert result.kept_epoch == result.best_epoch == int(np.argmin(losses)) + 1 < len(losses)


def test_split_is_train_pys_and_by_genome_keeps_genomes_whole():
    indices = list(range(1000))
    random.seed(42)
    random.shuffle(indices)
    train_rows, test_rows = split_rows(1000, TrainingConfig())
    assert test_rows.tolist() == indices[:100] and train_rows.tolist() == indices[100:]

    genomes = np.repeat([f"g{i}" for i in range(50)], 20)
    train_rows, test_rows = split_rows(1000, TrainingConfig(split="genome"), genomes)
    assert not set(genomes[train_rows]) & set(genomes[test_rows])
    assert len(test_rows) == 100 and len(train_rows) == 900


def test_auroc_counts_ties_half():
    assert auroc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert math.isnan(auroc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_the_loop_builds_the_published_classifier_shape():
    from virnucpro_assets.models.classifier import mlp
    from virnucpro_assets.training import trainer

    assert (mlp.HIDDEN_WIDTH, len(mlp.CLASS_LABELS)) == (trainer.HIDDEN_WIDTH, trainer.CLASSES)


class ReplayOnCPU:
    """CudaGraphCapture's part, on the CPU: what it 'captures' runs again at each replay."""

    def __init__(self, device):
        self.captures = 0

    def __call__(self, work):
        self.captures += 1
        return work

    warm_up = contextlib.nullcontext


def test_graphed_steps_run_the_eager_steps(monkeypatch):
    """The bookkeeping around the CUDA graphs (warm-up steps, blocks of STEPS_PER_GRAPH steps, single
    steps, the short last batch eagerly, capturing again when StepLR changes the rate) runs the same
    steps on the same rows as the eager loop: the same losses and weights, bit for bit."""
    made = []
    monkeypatch.setattr(trainer, "CudaGraphCapture", lambda device: made.append(ReplayOnCPU(device)) or made[-1])
    features, labels = data(1400, separable=True)  # 1260 training rows: 3 + 32 + 4 steps, then 12 rows
    config = TrainingConfig(torch_seed=2, max_epochs=5, step_size=2)
    eager = train(features, labels, config, cuda_graphs=False)
    graphed = train(features, labels, config, cuda_graphs=True)

    assert made[0].captures == 2 * 3  # two graphs at each of the rates of epochs 1-2, 3-4 and 5
    assert [(e.train_loss, e.test.loss) for e in graphed.epochs] == [(e.train_loss, e.test.loss) for e in eager.epochs]
    for name, value in eager.model.state_dict().items():
        assert torch.equal(graphed.model.state_dict()[name], value), name
