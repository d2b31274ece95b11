"""The TF-IDF + logistic regression baseline: C chosen on valid, saved without pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.batching import Corpus
from pipeline.config import load_params, with_overrides
from pipeline.errors import PipelineError
from pipeline.tfidf import TfidfLogReg, texts


def corpus(documents: list[list[int]], labels: list[int]) -> Corpus:
    offsets = np.cumsum([0, *map(len, documents)]).astype(np.int64)
    return Corpus(np.concatenate(documents).astype(np.int32), offsets,
                  np.asarray(labels, dtype=np.int64))


def reviews(count: int, seed: int) -> Corpus:
    """Class 1 reviews say "2 3" (a bigram) somewhere, class 0 reviews say "3 2"; every
    review also holds noise words 4..40. Only the bigrams tell the classes apart."""
    rng = np.random.default_rng(seed)
    documents, labels = [], []
    for k in range(count):
        label = k % 2
        noise = rng.integers(4, 40, size=rng.integers(5, 15)).tolist()
        cut = int(rng.integers(0, len(noise)))
        documents.append(noise[:cut] + ([2, 3] if label else [3, 2]) + noise[cut:])
        labels.append(label)
    return corpus(documents, labels)


def test_texts_write_every_token_id_of_each_document() -> None:
    assert texts(corpus([[5, 6, 7], [8]], [0, 1])) == ["5 6 7", "8"]


def test_bigrams_separate_what_unigrams_cannot_and_c_is_chosen_on_valid() -> None:
    train, valid = reviews(60, seed=1), reviews(40, seed=2)
    model, history = TfidfLogReg.fit(train, valid, [100.0, 0.01], ngram_max=2, min_df=1,
                                     max_iter=1000, seed=0)
    assert [row["C"] for row in history] == [0.01, 100.0]  # the grid, in increasing order
    # C=0.01 regularizes the weights to almost nothing: the larger C wins on valid
    assert history[0]["valid_accuracy"] < history[1]["valid_accuracy"]
    assert model.C == 100.0 and history[1]["valid_accuracy"] >= 0.9
    probs = model.predict_proba(valid)
    assert probs.shape == (40, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert (probs.argmax(1) == valid.labels).mean() == history[1]["valid_accuracy"]
    # the same words without their order: unigrams alone are at chance
    unigram, _ = TfidfLogReg.fit(train, valid, [100.0], ngram_max=1, min_df=1, max_iter=1000,
                                 seed=0)
    assert (unigram.predict_proba(valid).argmax(1) == valid.labels).mean() < 0.8


def test_saved_model_loads_without_pickle_and_predicts_the_same(tmp_path: Path) -> None:
    train, valid = reviews(60, seed=1), reviews(40, seed=2)
    model, _ = TfidfLogReg.fit(train, valid, [1.0, 10.0], ngram_max=2, min_df=2,
                               max_iter=1000, seed=0)
    path = tmp_path / "tfidf_logreg.pt"
    model.save(path, {"vocab_sha256": "abc", "label_names": ["neg", "pos"]})
    blob = torch.load(path, weights_only=True)  # tensors, numbers and strings only
    assert blob["kind"] == "tfidf_logreg" and blob["label_names"] == ["neg", "pos"]
    # min_df=2 dropped the n-grams of a single training review
    assert len(blob["ngrams"]) == len(model.vectorizer.vocabulary_) < len(
        TfidfLogReg.fit(train, valid, [1.0], 2, 1, 1000, 0)[0].vectorizer.vocabulary_)
    loaded, extra = TfidfLogReg.load(path, "abc")
    assert loaded.C == model.C and extra["label_names"] == ["neg", "pos"]
    np.testing.assert_allclose(loaded.predict_proba(valid), model.predict_proba(valid),
                               rtol=1e-6)


def test_bad_model_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    train, valid = reviews(20, seed=1), reviews(10, seed=2)
    model, _ = TfidfLogReg.fit(train, valid, [1.0], 2, 1, 1000, 0)
    path = tmp_path / "tfidf_logreg.pt"
    model.save(path, {"vocab_sha256": "abc"})
    with pytest.raises(PipelineError, match="another vocabulary"):
        TfidfLogReg.load(path, "def")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(PipelineError, match="truncated.pt is not a checkpoint written by"):
        TfidfLogReg.load(truncated, "abc")
    other = tmp_path / "other.pt"
    torch.save({"kind": "rnn_classifier", "vocab_sha256": "abc"}, other)
    with pytest.raises(PipelineError, match="not a TF-IDF"):
        TfidfLogReg.load(other, "abc")
    with pytest.raises(PipelineError, match="missing model file"):
        TfidfLogReg.load(tmp_path / "absent.pt", "abc")


def test_min_df_above_every_ngram_is_a_clear_error() -> None:
    train, valid = reviews(6, seed=1), reviews(4, seed=2)
    with pytest.raises(PipelineError, match="classifier.tfidf_logreg"):
        TfidfLogReg.fit(train, valid, [1.0], 2, 50, 1000, 0)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"classifier.tfidf_logreg.C": [1.0, 0.0]}, "every C must be positive"),
    ({"classifier.tfidf_logreg.C": []}, "classifier.tfidf_logreg.C"),
    ({"classifier.tfidf_logreg.ngram_max": 4}, "classifier.tfidf_logreg.ngram_max"),
    ({"classifier.tfidf_logreg.min_df": 0}, "classifier.tfidf_logreg.min_df"),
])
def test_bad_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        with_overrides(load_params(), overrides, "params.yaml")
