from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import (
    accuracy_interval,
    bootstrap_indices,
    classification_metrics,
    difference_interval,
    roc_auc,
)


def test_classification_metrics_binary() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    metrics = classification_metrics(labels, probs, ["neg", "pos"])
    assert metrics["accuracy"] == 0.75
    assert metrics["roc_auc"] == 1.0
    assert metrics["confusion_matrix"] == [[1, 1], [0, 2]]
    assert metrics["per_class"]["pos"]["recall"] == 1.0


def test_multiclass_auc_and_degenerate_cases() -> None:
    labels = np.array([0, 1, 2, 2])
    probs = np.eye(3)[labels] * 0.7 + 0.1
    assert roc_auc(labels, probs) == 1.0
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([[0.2, 0.8], [0.4, 0.6]])))


def test_bootstrap_intervals() -> None:
    rng = np.random.default_rng(0)
    correct_a = rng.random(5000) < 0.90
    correct_b = rng.random(5000) < 0.85
    indices = bootstrap_indices(5000, 500, seed=1)
    low, high = accuracy_interval(correct_a, indices)
    assert low < correct_a.mean() < high and high - low < 0.03
    d_low, d_high = difference_interval(correct_a, correct_b, indices)
    assert 0 < d_low < correct_a.mean() - correct_b.mean() < d_high
    same_low, same_high = difference_interval(correct_a, correct_a, indices)
    assert same_low == same_high == pytest.approx(0.0)
