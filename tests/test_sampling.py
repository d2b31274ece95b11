from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.batching import Corpus
from pipeline.errors import PipelineError
from pipeline.sampling import stratified_rows
from pipeline.stages.prepare import stratified_sample


def test_stratified_rows_keep_class_proportions_and_are_seeded() -> None:
    labels = np.array([0] * 150 + [1] * 50)
    rows = stratified_rows(labels, 40, seed=3, key="k")
    assert len(np.unique(rows)) == 40 and np.all(np.diff(rows) > 0)  # distinct, sorted
    assert np.bincount(labels[rows]).tolist() == [30, 10]
    assert np.array_equal(rows, stratified_rows(labels, 40, seed=3, key="k"))
    assert not np.array_equal(rows, stratified_rows(labels, 40, seed=4, key="k"))


def test_too_few_rows_for_every_class_names_the_setting() -> None:
    with pytest.raises(PipelineError, match=r"prepare.max_test=2 is fewer than the 3 classes"):
        stratified_rows(np.array([0, 1, 2, 0, 1, 2]), 2, seed=0, key="prepare.max_test")


def test_capped_splits_and_few_label_samples_pick_the_same_reviews() -> None:
    """prepare's caps and the classifiers' train_examples draw the same rows for the same
    labels and seed: one sampling rule, not two that drift apart."""
    labels = np.random.default_rng(0).integers(0, 3, size=300)
    frame = pd.DataFrame({"text": [f"review {i}" for i in range(300)], "label": labels})
    corpus = Corpus(np.arange(300, dtype=np.int32), np.arange(301, dtype=np.int64), labels)
    for seed in (1, 2):
        capped = stratified_sample(frame, 45, seed, "prepare.max_train")
        few = corpus.labeled_sample(45, seed)
        assert [int(t.split()[1]) for t in capped["text"]] == few.ids.tolist()
