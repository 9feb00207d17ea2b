"""train.py's recipe: the MLP, its initialisation, optimiser, schedule, split and early stopping.

What the original does, and what this loop does the same way:

- rows in the order of the training list (viral files, then the others); a test split of
  int(0.1 * N) rows from `random.seed(42); random.shuffle(list(range(N)))` (the first ones
  after shuffling are the test rows), training on the rest;
- MLP 3328 -> 512 -> BatchNorm1d -> ReLU -> Dropout(0.5) -> 2, default layer initialisation then
  Xavier-uniform on both weight matrices; cross entropy; SGD lr 2e-4, momentum 0.9; StepLR(10,
  0.85) stepped after every epoch; batches of 32, training rows reshuffled every epoch, test rows
  in order;
- the epoch's loss is the mean of its batch losses (so is the test loss); after each epoch the
  test loss goes to early stopping with patience 5: the first epoch sets the best, a lower loss
  resets the count, any other adds one, and at 5 training stops (before the scheduler's step).

Where it differs, on purpose (each is a setting or documented):

- The original keeps `model.state_dict()` as "best weights", which are references to the live
  tensors, so restoring them at the stop restores nothing: the model saved is the one after the
  last epoch. `restore_best=False` (the default) keeps that behaviour; True keeps the best epoch.
  When 200 epochs pass without a stop the original saves no model at all; here the last one is kept.
- The original's initialisation, per-epoch shuffle and dropout draw from torch's global generator,
  which it never seeds; here it is seeded with `torch_seed` first, and drawn from in the same
  sequence as train.py's DataLoaders draw from it (see `_loader_starts`), so this loop is train.py
  with `torch.manual_seed(torch_seed)` added, epoch for epoch.
- A last training batch of a single row makes BatchNorm raise in the original; it is skipped.
- `split="genome"` keeps all chunks of a genome on one side (the original's split by pair index
  puts overlapping chunks of one genome on both sides, which flatters its test metrics).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import RandomSampler

from virnucpro_assets.training.cuda_graphs import CudaGraphCapture, GraphedSteps
from virnucpro_assets.training.metrics import Metrics, binary_metrics

# The published classifier's widths (virnucpro_assets.models.classifier.mlp, checked equal by the
# tests); kept here so that this loop imports torch and numpy only and runs on bare GPU machines.
HIDDEN_WIDTH = 512
CLASSES = 2

SPLITS = ("pairs", "genome")


@dataclass(frozen=True)
class TrainingConfig:
    learning_rate: float = 2e-4
    momentum: float = 0.9
    step_size: int = 10
    gamma: float = 0.85
    batch_size: int = 32
    test_fraction: float = 0.1
    split_seed: int = 42
    split: str = "pairs"
    patience: int = 5
    max_epochs: int = 200
    restore_best: bool = False
    torch_seed: int = 0

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split={self.split!r}: choose 'pairs' (the original's) or 'genome'")


class MLP(nn.Module):
    """The classifier as trained (train mode has BatchNorm batch statistics and dropout). Its
    submodules are built in the original's order, so a seeded generator gives the same weights."""

    def __init__(self, feature_width: int):
        super().__init__()
        self.hidden_layer = nn.Linear(feature_width, HIDDEN_WIDTH)
        self.bn1 = nn.BatchNorm1d(HIDDEN_WIDTH)
        self.output_layer = nn.Linear(HIDDEN_WIDTH, CLASSES)
        self.dropout = nn.Dropout(0.5)
        nn.init.xavier_uniform_(self.hidden_layer.weight)
        nn.init.xavier_uniform_(self.output_layer.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.dropout(F.relu(self.bn1(self.hidden_layer(x)))))

    def weights(self):
        """The weights as the classifier package's ClassifierWeights (fp32, CPU)."""
        from virnucpro_assets.models.classifier.mlp import ClassifierWeights

        def cpu(tensor):
            return tensor.detach().to("cpu", torch.float32, copy=True).contiguous()

        return ClassifierWeights(
            hidden_weight=cpu(self.hidden_layer.weight),
            hidden_bias=cpu(self.hidden_layer.bias),
            norm_weight=cpu(self.bn1.weight),
            norm_bias=cpu(self.bn1.bias),
            norm_running_mean=cpu(self.bn1.running_mean),
            norm_running_var=cpu(self.bn1.running_var),
            norm_eps=self.bn1.eps,
            output_weight=cpu(self.output_layer.weight),
            output_bias=cpu(self.output_layer.bias),
        )


@dataclass(frozen=True)
class Epoch:
    epoch: int  # from 1
    train_loss: float
    learning_rate: float
    test: Metrics
    seconds: float


@dataclass
class TrainingResult:
    model: MLP  # the kept weights, on the training device, in eval mode
    epochs: list[Epoch]
    kept_epoch: int
    best_epoch: int
    stopped_early: bool
    train_rows: int
    test_rows: int
    test_labels: np.ndarray = field(repr=False)
    test_scores: np.ndarray = field(repr=False)  # P(virus) of each test row, from the kept weights

    @property
    def weights(self):
        """The kept weights as virnucpro_assets.models.classifier's ClassifierWeights."""
        return self.model.weights()

    def summary(self) -> dict:
        return {
            "epochs": len(self.epochs),
            "kept_epoch": self.kept_epoch,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            **{f"test_{k}": v for k, v in asdict(self.kept_metrics).items()},
        }

    @property
    def kept_metrics(self) -> Metrics:
        return self.epochs[self.kept_epoch - 1].test


def split_rows(count: int, config: TrainingConfig, genomes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows). By pairs: train.py's shuffle of all row indices with
    random.seed(split_seed), the first int(fraction * count) as test. By genome: the genomes are
    shuffled the same way and go to the test side whole until it holds that many rows."""
    target = int(count * config.test_fraction)
    if config.split == "pairs":
        indices = list(range(count))
        random.Random(config.split_seed).shuffle(indices)
        return np.array(indices[target:], dtype=np.int64), np.array(indices[:target], dtype=np.int64)
    if genomes is None:
        raise ValueError("a split by genome needs each row's genome")
    names, inverse = np.unique(np.asarray(genomes), return_inverse=True)
    order = list(range(len(names)))
    random.Random(config.split_seed).shuffle(order)
    sizes = np.bincount(inverse, minlength=len(names))
    test_genomes, held = [], 0
    for genome in order:
        if held >= target:
            break
        test_genomes.append(genome)
        held += sizes[genome]
    in_test = np.isin(inverse, test_genomes)
    return np.flatnonzero(~in_test), np.flatnonzero(in_test)


def train(
    features: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    config: TrainingConfig = TrainingConfig(),
    *,
    genomes: np.ndarray | None = None,
    device: str = "cpu",
    cuda_graphs: bool | None = None,
    on_epoch: Callable[[Epoch], None] | None = None,
) -> TrainingResult:
    """Train on rows of merged features (float32 [N, width]) with labels (1 virus, 0 others).
    On a GPU the optimizer steps are replayed from CUDA graphs (training.cuda_graphs) unless
    `cuda_graphs=False`."""
    features = torch.as_tensor(features, dtype=torch.float32).to(device)
    targets = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(device)
    train_rows, test_rows = split_rows(len(targets), config, genomes)
    if len(train_rows) < 2 or len(test_rows) < 1:
        raise ValueError(f"too few rows to train: {len(train_rows)} for training and {len(test_rows)} for testing")
    train_index = torch.as_tensor(train_rows, device=device)
    test_index = torch.as_tensor(test_rows, device=device)

    torch.manual_seed(config.torch_seed)
    model = MLP(features.shape[1]).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=config.momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)

    def step(batch: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(features[batch]), targets[batch])
        loss.backward()
        optimizer.step()
        return loss.detach()

    if cuda_graphs is None:
        cuda_graphs = features.device.type == "cuda"
    graphed = None
    if cuda_graphs:
        capture = CudaGraphCapture(features.device)
        graphed = GraphedSteps(step, config.batch_size, features.device, capture, capture.warm_up)

    epochs: list[Epoch] = []
    best_loss, best_epoch, best_state, waited, stopped = math.inf, 0, None, 0, False
    for number in range(1, config.max_epochs + 1):
        started = time.perf_counter()
        learning_rate = optimizer.param_groups[0]["lr"]
        model.train()
        _loader_starts()
        positions = torch.tensor(list(RandomSampler(range(len(train_rows)))), dtype=torch.int64)
        order = train_index[positions.to(device)]
        if graphed is not None:
            total, batches = graphed.run_epoch(order, learning_rate)
        else:
            total, batches = torch.zeros((), device=device), 0
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                if len(batch) >= 2:
                    total += step(batch)
                    batches += 1
        train_loss = float(total) / batches
        metrics, _ = evaluate(model, features, targets, test_index, config.batch_size)
        epoch = Epoch(number, train_loss, learning_rate, metrics, time.perf_counter() - started)
        epochs.append(epoch)
        if on_epoch:
            on_epoch(epoch)

        if best_state is None or metrics.loss < best_loss:
            best_loss, best_epoch, waited = metrics.loss, number, 0
            # train.py's "best weights" alias the live tensors; a copy only when the best is restored.
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()} if config.restore_best else {}
        else:
            waited += 1
            if waited >= config.patience:
                stopped = True
                break
        scheduler.step()

    kept = len(epochs)
    if config.restore_best and kept != best_epoch:
        model.load_state_dict(best_state)
        kept = best_epoch
    _, scores = evaluate(model, features, targets, test_index, config.batch_size)
    return TrainingResult(
        model=model,
        epochs=epochs,
        kept_epoch=kept,
        best_epoch=best_epoch,
        stopped_early=stopped,
        train_rows=len(train_rows),
        test_rows=len(test_rows),
        test_labels=targets[test_index].cpu().numpy(),
        test_scores=scores,
    )


@torch.no_grad()
def evaluate(model: MLP, features: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, batch_size: int) -> tuple[Metrics, np.ndarray]:
    """train.py's test pass: eval mode, batches in order, loss = mean of batch losses; metrics
    with class 1 (virus) positive. Returns the metrics and each row's P(virus)."""
    model.eval()
    _loader_starts()
    total = torch.zeros((), device=features.device)
    predicted, scores = [], []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        logits = model(features[batch])
        total += F.cross_entropy(logits, targets[batch])
        predicted.append(logits.argmax(dim=1))
        scores.append(F.softmax(logits, dim=1)[:, 1])
    batches = -(-len(rows) // batch_size)
    labels = targets[rows].cpu().numpy()
    predictions = torch.cat(predicted).cpu().numpy()
    probabilities = torch.cat(scores).cpu().numpy()
    return binary_metrics(float(total) / batches, labels, predictions, probabilities), probabilities


def _loader_starts() -> None:
    """What iterating a DataLoader does to the global generator before its first batch, whatever
    its sampler: it draws its workers' base seed (torch.utils.data's _BaseDataLoaderIter). A
    shuffling DataLoader's RandomSampler then draws its own seed from it too (RandomSampler is
    used as it is, below)."""
    torch.empty((), dtype=torch.int64).random_()
