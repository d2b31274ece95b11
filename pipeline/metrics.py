"""Classification metrics (scikit-learn) and paired bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Binary ROC-AUC, or the macro one-vs-rest AUC for more classes (NaN if undefined)."""
    present = np.unique(labels)
    if len(present) < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    if len(present) < probs.shape[1]:
        return float("nan")
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def classification_metrics(labels: np.ndarray, probs: np.ndarray,
                           label_names: list[str]) -> dict:
    predicted = probs.argmax(axis=1)
    classes = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=classes, average="macro",
                                   zero_division=0)),
        "roc_auc": roc_auc(labels, probs),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(label_names)
        },
    }


def bootstrap_indices(n: int, samples: int, seed: int) -> np.ndarray:
    """[samples, n] resampling indices; the same for every model, so differences are paired."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n), dtype=np.int32)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> list[float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def accuracy_interval(correct: np.ndarray, indices: np.ndarray) -> list[float]:
    return percentile_interval(correct[indices].mean(axis=1))


def difference_interval(correct_a: np.ndarray, correct_b: np.ndarray,
                        indices: np.ndarray) -> list[float]:
    """95% interval of accuracy(a) - accuracy(b) over the same resampled test sets."""
    diff = correct_a.astype(np.float32) - correct_b.astype(np.float32)
    return percentile_interval(diff[indices].mean(axis=1))


def roc_points(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve (binary), or the micro-averaged one-vs-rest curve for more classes."""
    if probs.shape[1] == 2:
        fpr, tpr, _ = roc_curve(labels, probs[:, 1])
    else:
        onehot = np.eye(probs.shape[1])[labels]
        fpr, tpr, _ = roc_curve(onehot.ravel(), probs.ravel())
    return fpr, tpr
