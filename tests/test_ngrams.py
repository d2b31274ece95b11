"""The n-gram + logistic regression baselines (TF-IDF and NB-weighted): C chosen on valid,
saved without pickle, two classes and more."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import sparse

from pipeline.batching import Corpus
from pipeline.config import load_params, with_overrides
from pipeline.errors import PipelineError
from pipeline.ngrams import NgramLogReg, log_count_ratios, texts, vectorizer

WEIGHTINGS = ["tfidf", "nb"]


def corpus(documents: list[list[int]], labels: list[int]) -> Corpus:
    offsets = np.cumsum([0, *map(len, documents)]).astype(np.int64)
    return Corpus(np.concatenate(documents).astype(np.int32), offsets,
                  np.asarray(labels, dtype=np.int64))


def reviews(count: int, seed: int, classes: int = 2) -> Corpus:
    """Class 1 reviews say "2 3" (a bigram) somewhere, class 0 reviews say "3 2", class 2
    (when there are three) "2 2 3 3"... every review also holds noise words 4..40. Only the
    n-grams tell the classes apart."""
    marks = [[3, 2], [2, 3], [3, 3, 2, 2]][:classes]
    rng = np.random.default_rng(seed)
    documents, labels = [], []
    for k in range(count):
        label = k % classes
        noise = rng.integers(4, 40, size=rng.integers(5, 15)).tolist()
        cut = int(rng.integers(0, len(noise)))
        documents.append(noise[:cut] + marks[label] + noise[cut:])
        labels.append(label)
    return corpus(documents, labels)


def accuracy(model: NgramLogReg, data: Corpus) -> float:
    return float((model.predict_proba(data).argmax(1) == data.labels).mean())


def test_texts_write_every_token_id_of_each_document() -> None:
    assert texts(corpus([[5, 6, 7], [8]], [0, 1])) == ["5 6 7", "8"]


def test_the_log_count_ratio_is_naive_bayes_with_add_one_smoothing() -> None:
    # n-gram 0 in both positive reviews, n-gram 1 in the negative one only
    features = sparse.csr_matrix(np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32))
    ratio = log_count_ratios(features, np.array([1, 1, 0]), 2)
    p, q = np.array([3.0, 1.0]), np.array([1.0, 2.0])
    np.testing.assert_allclose(ratio, [np.log(p / p.sum()) - np.log(q / q.sum())], rtol=1e-6)
    assert log_count_ratios(features, np.array([1, 2, 0]), 3).shape == (3, 2)  # one per class


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_bigrams_separate_what_unigrams_cannot_and_c_is_chosen_on_valid(weighting: str) -> None:
    train, valid = reviews(60, seed=1), reviews(40, seed=2)
    model, history = NgramLogReg.fit(train, valid, weighting, [100.0, 0.01], ngram_max=2,
                                     min_df=1, max_iter=1000, seed=0)
    assert [row["C"] for row in history] == [0.01, 100.0]  # the grid, in increasing order
    # the best on valid is kept, the smaller C on a tie
    best = max(history, key=lambda row: row["valid_accuracy"])
    assert best["C"] == model.C and best["valid_accuracy"] >= 0.9
    if weighting == "tfidf":  # C=0.01 regularizes the weights to almost nothing
        assert history[0]["valid_accuracy"] < history[1]["valid_accuracy"]
    probs = model.predict_proba(valid)
    assert probs.shape == (40, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    assert accuracy(model, valid) == best["valid_accuracy"]
    # the same words without their order: unigrams alone are at chance
    unigram, _ = NgramLogReg.fit(train, valid, weighting, [100.0], ngram_max=1, min_df=1,
                                 max_iter=1000, seed=0)
    assert accuracy(unigram, valid) < 0.8


def test_tfidf_probabilities_are_scikit_learns() -> None:
    """The weights are kept as a plain matrix: its probabilities must be the fitted
    LogisticRegression's own, for two classes (sigmoid) and three (softmax)."""
    from sklearn.linear_model import LogisticRegression

    for classes in (2, 3):
        train, valid = reviews(60, seed=1, classes=classes), reviews(30, seed=2, classes=classes)
        model, _ = NgramLogReg.fit(train, valid, "tfidf", [10.0], 2, 1, 1000, 0)
        features = vectorizer("tfidf", 2, 1)
        reference = LogisticRegression(C=10.0, max_iter=1000, random_state=0).fit(
            features.fit_transform(texts(train)), train.labels)
        np.testing.assert_allclose(
            model.predict_proba(valid),
            reference.predict_proba(features.transform(texts(valid))), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_three_classes(weighting: str) -> None:
    train, valid = reviews(90, seed=1, classes=3), reviews(60, seed=2, classes=3)
    model, history = NgramLogReg.fit(train, valid, weighting, [100.0], 2, 1, 1000, 0)
    probs = model.predict_proba(valid)
    assert probs.shape == (60, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    assert history[0]["valid_accuracy"] >= 0.9
    # one binary model per class against the rest for nb, one multinomial model for tfidf
    assert model.weights.shape[0] == 3


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_saved_model_loads_without_pickle_and_predicts_the_same(tmp_path: Path,
                                                                 weighting: str) -> None:
    train, valid = reviews(60, seed=1), reviews(40, seed=2)
    model, _ = NgramLogReg.fit(train, valid, weighting, [1.0, 10.0], ngram_max=2, min_df=2,
                               max_iter=1000, seed=0)
    path = tmp_path / "model.pt"
    model.save(path, {"vocab_sha256": "abc", "label_names": ["neg", "pos"]})
    blob = torch.load(path, weights_only=True)  # tensors, numbers and strings only
    assert blob["kind"] == "ngram_logreg" and blob["weighting"] == weighting
    assert blob["label_names"] == ["neg", "pos"]
    # min_df=2 dropped the n-grams of a single training review
    assert len(blob["ngrams"]) == len(model.vectorizer.vocabulary_) < len(
        NgramLogReg.fit(train, valid, weighting, [1.0], 2, 1, 1000, 0)[0].vectorizer.vocabulary_)
    loaded, extra = NgramLogReg.load(path, "abc")
    assert loaded.C == model.C and loaded.weighting == weighting
    assert extra["label_names"] == ["neg", "pos"]
    np.testing.assert_allclose(loaded.predict_proba(valid), model.predict_proba(valid),
                               rtol=1e-6)


def test_bad_model_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    train, valid = reviews(20, seed=1), reviews(10, seed=2)
    model, _ = NgramLogReg.fit(train, valid, "nb", [1.0], 2, 1, 1000, 0)
    path = tmp_path / "nb_logreg.pt"
    model.save(path, {"vocab_sha256": "abc"})
    with pytest.raises(PipelineError, match="another vocabulary"):
        NgramLogReg.load(path, "def")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(PipelineError, match="truncated.pt is not a checkpoint written by"):
        NgramLogReg.load(truncated, "abc")
    other = tmp_path / "other.pt"
    torch.save({"kind": "rnn_classifier", "vocab_sha256": "abc"}, other)
    with pytest.raises(PipelineError, match="not an n-gram"):
        NgramLogReg.load(other, "abc")
    with pytest.raises(PipelineError, match="missing model file"):
        NgramLogReg.load(tmp_path / "absent.pt", "abc")


def test_min_df_above_every_ngram_is_a_clear_error() -> None:
    train, valid = reviews(6, seed=1), reviews(4, seed=2)
    with pytest.raises(PipelineError, match="classifier.nb_logreg"):
        NgramLogReg.fit(train, valid, "nb", [1.0], 2, 50, 1000, 0, "classifier.nb_logreg")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"classifier.tfidf_logreg.C": [1.0, 0.0]}, "every C must be positive"),
    ({"classifier.tfidf_logreg.C": []}, "classifier.tfidf_logreg.C"),
    ({"classifier.nb_logreg.ngram_max": 4}, "classifier.nb_logreg.ngram_max"),
    ({"classifier.nb_logreg.min_df": 0}, "classifier.nb_logreg.min_df"),
])
def test_bad_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        with_overrides(load_params(), overrides, "params.yaml")


@pytest.mark.parametrize(("weighting", "ngram_max"), [("tfidf", 2), ("nb", 3), ("nb", 1)])
def test_a_loaded_model_counts_n_grams_in_numpy_exactly_as_the_vectorizer(
        tmp_path: Path, weighting: str, ngram_max: int) -> None:
    """A model read from its file counts n-grams with NgramIndex, not the scikit-learn
    vectorizer's Python loop: the same sparse matrix entry for entry, in the same order, so
    the same probabilities bit for bit. Also with words the vocabulary never saw (ids above
    all of its n-grams', in and around known n-grams), an empty review, and reviews read in
    chunks of a few tokens."""
    train, valid = reviews(60, seed=1), reviews(40, seed=2)
    model, _ = NgramLogReg.fit(train, valid, weighting, [1.0], ngram_max=ngram_max, min_df=2,
                               max_iter=1000, seed=0)
    assert model.index is None  # a fitted model uses its vectorizer
    model.save(tmp_path / "model.pt", {"vocab_sha256": "abc"})
    loaded, _ = NgramLogReg.load(tmp_path / "model.pt", "abc")
    assert loaded.index is not None
    unseen = 5000  # far above every id in the vocabulary's n-grams
    data = corpus([*(valid.ids[valid.offsets[k]:valid.offsets[k + 1]].tolist()
                     for k in range(len(valid))),
                   [2, 3, unseen, 3, 2, 2, 3], [unseen], [], [unseen, 2, 3, unseen]],
                  [*valid.labels.tolist(), 0, 1, 0, 1])
    assert_same_matrix(loaded.features(data), model.vectorizer.transform(texts(data)))
    whole = loaded.index.counts(data, binary=weighting == "nb")
    for chunk_tokens in (7, 1):
        assert_same_matrix(loaded.index.counts(data, weighting == "nb", chunk_tokens), whole)
    np.testing.assert_array_equal(loaded.predict_proba(data), model.predict_proba(data))


def assert_same_matrix(got: sparse.csr_matrix, expected: sparse.csr_matrix) -> None:
    """Entry for entry, in the same order, with the same dtype."""
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(got.indptr, expected.indptr)
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_array_equal(got.data, expected.data)


def test_n_grams_whose_codes_would_overflow_fall_back_to_the_vectorizer() -> None:
    from pipeline.ngrams import NgramIndex

    assert NgramIndex.of(np.array([[2 ** 21, 5, -1]], dtype=np.int64)) is None
    assert NgramIndex.of(np.zeros((0, 2), dtype=np.int64)) is None
    index = NgramIndex.of(np.array([[7, -1], [3, 7], [3, -1]], dtype=np.int64))
    # "7" -> 8, "3 7" -> 4 * 9 + 8 = 44, "3" -> 4: sorted codes, each with its row (column)
    assert index.base == 9 and index.codes.tolist() == [4, 8, 44]
    assert index.columns.tolist() == [2, 0, 1]
