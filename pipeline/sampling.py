"""Samples of labeled rows that keep every class (few-label studies, capped splits)."""

from __future__ import annotations

import numpy as np


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
