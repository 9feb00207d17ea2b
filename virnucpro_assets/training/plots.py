"""The training run's pictures: metrics per epoch, the confusion matrix, the ROC curve (PNG bytes)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from virnucpro_assets.training.metrics import confusion_matrix, roc_curve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from virnucpro_assets.training.trainer import TrainingResult


def _figure(width: float, height: float) -> Figure:
    # matplotlib is imported here, when a picture is drawn: every step's process imports this
    # module, and matplotlib takes a few tenths of a second to import.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def epochs_plot(result: TrainingResult) -> bytes:
    figure = _figure(8, 4)
    losses, scores = figure.subplots(1, 2)
    numbers = [e.epoch for e in result.epochs]
    losses.plot(numbers, [e.train_loss for e in result.epochs], label="train loss")
    losses.plot(numbers, [e.test.loss for e in result.epochs], label="test loss")
    losses.axvline(result.kept_epoch, color="grey", linestyle=":", label=f"kept: epoch {result.kept_epoch}")
    losses.set_xlabel("epoch")
    losses.legend()
    for name in ("accuracy", "precision", "recall", "f1", "auroc"):
        scores.plot(numbers, [getattr(e.test, name) for e in result.epochs], label=name)
    scores.set_xlabel("epoch")
    scores.set_ylim(0, 1.02)
    scores.legend(title="test")
    return _png(figure)


def confusion_plot(result: TrainingResult) -> bytes:
    matrix = np.array(confusion_matrix(result.test_labels, result.test_scores))
    figure = _figure(4, 3.5)
    axes = figure.subplots()
    axes.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, f"{count:,}", ha="center", va="center")
    axes.set_xticks([0, 1], ["others", "virus"])
    axes.set_yticks([0, 1], ["others", "virus"])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"test rows, epoch {result.kept_epoch}")
    return _png(figure)


def roc_plot(result: TrainingResult) -> bytes:
    fpr, tpr = roc_curve(result.test_labels, result.test_scores)
    figure = _figure(4, 4)
    axes = figure.subplots()
    axes.plot(fpr, tpr, label=f"AUROC {result.kept_metrics.auroc:.4f}")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.legend(loc="lower right")
    return _png(figure)
