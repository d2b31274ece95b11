"""Samples of labeled rows that keep every class (few-label studies, capped splits)."""

from __future__ import annotations

import numpy as np

from pipeline.errors import PipelineError


def stratified_rows(labels: np.ndarray, n: int, seed: int, key: str) -> np.ndarray:
    """Sorted indices of ``n`` of the rows of ``labels``, stratified by class, every class
    kept; ``key`` names the setting that asked for ``n`` in errors."""
    from sklearn.model_selection import train_test_split  # ~1 s: only when sampling

    classes, counts = np.unique(labels, return_counts=True)
    if n < len(classes):
        raise PipelineError(f"{key}={n} is fewer than the {len(classes)} classes: "
                            f"a sample of it cannot hold every class")
    rows = np.arange(len(labels))
    stratify = labels if counts.min() >= 2 else None
    try:
        chosen, _ = train_test_split(rows, train_size=n, random_state=seed, stratify=stratify)
    except ValueError:  # what is left out too small to hold every class: not stratified
        chosen, _ = train_test_split(rows, train_size=n, random_state=seed)
    # without stratifying (a class with one row), a random sample can miss a class
    return keep_every_class(chosen, labels, seed)


def keep_every_class(chosen: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """``chosen`` (row indices into ``labels``) with each class it lacks swapped in.

    A class too rare to stratify can vanish from a random sample; for each missing class
    one of its rows replaces a random chosen row of a class that has more than one, so the
    sample keeps its size and a sample that already has every class is left as it is.
    """
    chosen = np.array(chosen)
    rng = np.random.default_rng(seed)
    for label in np.setdiff1d(np.unique(labels), labels[chosen]):
        counts = dict(zip(*np.unique(labels[chosen], return_counts=True), strict=True))
        spare = [i for i, row in enumerate(chosen) if counts[labels[row]] > 1]
        chosen[rng.choice(spare)] = rng.choice(np.flatnonzero(labels == label))
    return np.sort(chosen)
