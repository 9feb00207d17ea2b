"""How a trained classifier scores on held-out rows: accuracy, precision, recall, F1, AUROC, the ROC
curve and the confusion matrix, in numpy (no torch: the plots and the training asset use them
without it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metrics:
    loss: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    auroc: float


def binary_metrics(loss: float, labels: np.ndarray, predictions: np.ndarray, scores: np.ndarray) -> Metrics:
    """Accuracy, precision, recall, F1 (0 where undefined, as scikit-learn's zero_division
    default gives after its warning) and AUROC (NaN when the labels hold one class only)."""
    labels, predictions = np.asarray(labels).astype(bool), np.asarray(predictions).astype(bool)
    true_positive = int(np.sum(labels & predictions))
    precision = true_positive / int(predictions.sum()) if predictions.any() else 0.0
    recall = true_positive / int(labels.sum()) if labels.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Metrics(
        loss=loss,
        accuracy=float(np.mean(labels == predictions)) if len(labels) else math.nan,
        precision=precision,
        recall=recall,
        f1=f1,
        auroc=auroc(labels, scores),
    )


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties counted half."""
    labels = np.asarray(labels).astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    scores_sorted, hits = np.asarray(scores)[order], labels[order]
    last_of_ties = np.r_[np.flatnonzero(np.diff(scores_sorted)), len(scores_sorted) - 1]
    tp, fp = np.cumsum(hits)[last_of_ties], np.cumsum(~hits)[last_of_ties]
    return np.r_[0, fp / max(fp[-1], 1)], np.r_[0, tp / max(tp[-1], 1)]


def confusion_matrix(labels: np.ndarray, scores: np.ndarray) -> list[list[int]]:
    """[[others called others, others called virus], [virus called others, virus called virus]]
    at the classifier's own boundary (P(virus) > 0.5 is argmax = virus; a tie is others)."""
    labels, called = np.asarray(labels).astype(bool), np.asarray(scores) > 0.5
    return [[int(np.sum(~labels & ~called)), int(np.sum(~labels & called))], [int(np.sum(labels & ~called)), int(np.sum(labels & called))]]
