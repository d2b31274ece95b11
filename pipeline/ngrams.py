"""Bag-of-n-grams + logistic regression: the strong, cheap baselines (scikit-learn).

Two weightings of the same n-gram counts, each a baseline of its own:

- ``tfidf`` (``tfidf_logreg``): TF-IDF with sublinear tf, l2-normalized;
- ``nb`` (``nb_logreg``): binary n-gram presence scaled by the naive Bayes log-count
  ratio r = log((p / |p|) / (q / |q|)) of the training reviews (p, q: each n-gram's count
  in the class's reviews and the other classes', plus one), Wang & Manning (2012)'s
  NBSVM with logistic regression in place of the SVM. More than two classes: one
  classifier per class against the rest, probabilities normalized.

Both read the same token ids as every other classifier (the vocabulary's, so a word
outside it is ``<unk>`` here too) and whole reviews, however long: a bag of n-grams costs
nothing per extra token. The regularization strength C is chosen on valid from a grid,
as the baselines in the literature are tuned. Saved as a plain ``torch.save`` dict of
tensors and numbers (loaded with ``weights_only=True``, like the other checkpoints).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from scipy import sparse

from pipeline.batching import Corpus
from pipeline.config import NGRAM_KIND
from pipeline.errors import PipelineError
from pipeline.models import read_checkpoint

Weighting = Literal["tfidf", "nb"]


def texts(corpus: Corpus) -> list[str]:
    """Each document as its token ids written out, space-separated (what the vectorizer
    splits into n-grams)."""
    bounds = corpus.offsets
    return [" ".join(map(str, corpus.ids[start:end].tolist()))
            for start, end in zip(bounds[:-1], bounds[1:], strict=True)]


def vectorizer(weighting: Weighting, ngram_max: int, min_df: int = 1,
               vocabulary: dict[str, int] | None = None):  # noqa: ANN201 (scikit-learn)
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    common = {"token_pattern": r"\S+", "ngram_range": (1, ngram_max), "dtype": np.float32,
              "vocabulary": vocabulary, "min_df": 1 if vocabulary else min_df}
    if weighting == "tfidf":
        return TfidfVectorizer(sublinear_tf=True, **common)
    return CountVectorizer(binary=True, **common)


def log_count_ratios(features: sparse.csr_matrix, labels: np.ndarray,
                     n_classes: int) -> np.ndarray:
    """One row per binary task (one for two classes, else one per class against the
    rest): log((p / |p|) / (q / |q|)) of each n-gram, with add-one smoothing."""
    tasks = [1] if n_classes == 2 else range(n_classes)
    rows = []
    for label in tasks:
        p = 1.0 + np.asarray(features[labels == label].sum(0)).ravel()
        q = 1.0 + np.asarray(features[labels != label].sum(0)).ravel()
        rows.append(np.log(p / p.sum()) - np.log(q / q.sum()))
    return np.stack(rows).astype(np.float32)


@dataclass
class NgramLogReg:
    weighting: Weighting
    vectorizer: object  # sklearn CountVectorizer / TfidfVectorizer, fitted
    weights: np.ndarray  # (tasks, n-grams): the linear model on the raw features
    bias: np.ndarray  # (tasks,)
    C: float

    @classmethod
    def fit(cls, train: Corpus, valid: Corpus, weighting: Weighting, C_grid: list[float],
            ngram_max: int, min_df: int, max_iter: int, seed: int, setting: str = "classifier"
            ) -> tuple[NgramLogReg, list[dict]]:
        """The model of the grid's C with the best valid accuracy (the smaller C on a tie),
        and one row per C: ``C``, ``valid_accuracy``, ``seconds``."""
        from sklearn.linear_model import LogisticRegression

        fitted = vectorizer(weighting, ngram_max, min_df)
        try:
            train_x = fitted.fit_transform(texts(train))
        except ValueError as exc:  # e.g. min_df above every n-gram's document count
            raise PipelineError(f"n-gram features: {exc} ({setting})") from None
        n_classes = int(train.labels.max()) + 1  # labeled_sample keeps every class
        # tfidf: one multinomial model on the features as they are; nb: one binary model per
        # row of ratios, on the features scaled by it (scaled once, not once per C)
        ratios = (log_count_ratios(train_x, train.labels, n_classes) if weighting == "nb"
                  else np.ones((1, train_x.shape[1]), dtype=np.float32))
        inputs = ([train_x @ sparse.diags(ratio) for ratio in ratios] if weighting == "nb"
                  else [train_x])
        targets = ([train.labels] if weighting == "tfidf" or n_classes == 2
                   else [(train.labels == c).astype(int) for c in range(n_classes)])
        valid_x = fitted.transform(texts(valid))
        best, history = None, []
        for C in sorted(C_grid):
            started = time.perf_counter()
            weights, bias = [], []
            for features, ratio, target in zip(inputs, ratios, targets, strict=True):
                model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
                model.fit(features, target)
                weights.append(model.coef_ * ratio)  # folded: features @ weights.T + bias
                bias.append(model.intercept_)
            candidate = cls(weighting, fitted, np.concatenate(weights).astype(np.float32),
                            np.concatenate(bias).astype(np.float32), C)
            accuracy = float((candidate.predict_proba_features(valid_x).argmax(1)
                              == valid.labels).mean())
            history.append({"C": C, "valid_accuracy": accuracy,
                            "seconds": time.perf_counter() - started})
            if best is None or accuracy > best[0]:
                best = (accuracy, candidate)
        return best[1], history

    def predict_proba_features(self, features: sparse.csr_matrix) -> np.ndarray:
        scores = np.asarray(features @ self.weights.T) + self.bias
        if scores.shape[1] == 1:  # two classes, one binary model
            positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.stack([1.0 - positive, positive], axis=1)
        if self.weighting == "tfidf":  # multinomial: softmax
            scores = np.exp(scores - scores.max(1, keepdims=True))
        else:  # one against the rest: each class's probability, normalized
            scores = 1.0 / (1.0 + np.exp(-scores))
        return scores / scores.sum(1, keepdims=True)

    def predict_proba(self, corpus: Corpus) -> np.ndarray:
        """Class probabilities, one row per document, columns in label-id order."""
        return self.predict_proba_features(self.vectorizer.transform(texts(corpus)))

    def save(self, path: Path, extra: dict) -> None:
        vocabulary = self.vectorizer.vocabulary_
        terms = sorted(vocabulary, key=vocabulary.__getitem__)
        # n-grams as rows of token ids (-1 pads the shorter ones): no strings to store
        width = self.vectorizer.ngram_range[1]
        grams = np.full((len(terms), width), -1, dtype=np.int64)
        for row, term in enumerate(terms):
            ids = term.split(" ")
            grams[row, :len(ids)] = [int(i) for i in ids]
        idf = getattr(self.vectorizer, "idf_", None)
        torch.save({"kind": NGRAM_KIND, "weighting": self.weighting,
                    "ngrams": torch.from_numpy(grams),
                    **({"idf": torch.from_numpy(idf.astype(np.float64))} if idf is not None
                       else {}),
                    "weights": torch.from_numpy(self.weights),
                    "bias": torch.from_numpy(self.bias), "C": self.C,
                    "ngram_max": width, "min_df": self.vectorizer.min_df, **extra}, path)

    @classmethod
    def load(cls, path: Path, vocab_sha256: str) -> tuple[NgramLogReg, dict]:
        """The model and the saved dict (label names, variant...), checked against the
        vocabulary the token ids come from."""
        return cls.from_checkpoint(read_checkpoint(path), path, vocab_sha256)

    @classmethod
    def from_checkpoint(cls, blob: dict, path: Path,
                        vocab_sha256: str) -> tuple[NgramLogReg, dict]:
        """:meth:`load` for a dict already read from ``path``."""
        if blob.get("kind") != NGRAM_KIND:
            raise PipelineError(f"{path} is not an n-gram + logistic regression model")
        if blob.get("vocab_sha256") != vocab_sha256:
            raise PipelineError(f"{path} was trained with another vocabulary: rerun "
                                "its train stage (dvc repro)")
        terms = [" ".join(str(i) for i in row if i >= 0) for row in blob["ngrams"].tolist()]
        fitted = vectorizer(blob["weighting"], blob["ngram_max"],
                            vocabulary={t: k for k, t in enumerate(terms)})
        if blob["weighting"] == "tfidf":  # (a CountVectorizer with a vocabulary needs no fit)
            fitted.idf_ = blob["idf"].numpy()
        return cls(blob["weighting"], fitted, blob["weights"].numpy(), blob["bias"].numpy(),
                   blob["C"]), blob
