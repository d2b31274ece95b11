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


@dataclass(frozen=True)
class NgramIndex:
    """A fitted vocabulary of n-grams as sorted integer codes, for turning reviews into the
    same count matrix as the scikit-learn vectorizer, bit for bit, in numpy: the vectorizer
    builds every n-gram of every review as a Python string (15.4 s against 4.5 s for the
    25,000 test reviews' 1-3-grams on the 2-core EPYC; benchmarks/bench_ngram_features.py).

    An n-gram of token ids a, b, c is the number with digits a + 1, b + 1, c + 1 in base
    ``base`` (the largest id + 2), so n-grams of different lengths never share a code."""

    codes: np.ndarray  # int64, sorted
    columns: np.ndarray  # the feature column of each code
    base: int
    ngram_max: int

    @classmethod
    def of(cls, grams: np.ndarray) -> NgramIndex | None:
        """From the n-grams as rows of token ids (-1 after the last), row k being column k;
        None when there are none or their codes would not fit in int64."""
        if grams.size == 0:
            return None
        base, ngram_max = int(grams.max()) + 2, grams.shape[1]
        if base ** ngram_max >= 2 ** 63:
            return None
        codes = np.zeros(len(grams), dtype=np.int64)
        for column in grams.astype(np.int64).T:
            codes = np.where(column >= 0, codes * base + column + 1, codes)
        order = np.argsort(codes, kind="stable")
        return cls(codes[order], order, base, ngram_max)

    def counts(self, corpus: Corpus, binary: bool,
               chunk_tokens: int = 2_000_000) -> sparse.csr_matrix:
        """The documents' n-gram counts [documents, n-grams] (float32, 1 for present with
        ``binary``), columns and entries in the vectorizer's order; n-grams outside the
        vocabulary are left out, as the vectorizer does. Read in chunks of about
        ``chunk_tokens`` tokens, so that memory does not grow with the corpus."""
        offsets = np.asarray(corpus.offsets, dtype=np.int64)
        starts = [0]
        while starts[-1] < len(corpus):  # whole documents per chunk, at least one each
            stop = int(np.searchsorted(offsets, offsets[starts[-1]] + chunk_tokens, "right")) - 1
            starts.append(min(max(stop, starts[-1] + 1), len(corpus)))
        if len(starts) == 1:
            return sparse.csr_matrix((0, len(self.codes)), dtype=np.float32)
        return sparse.vstack([self._chunk_counts(corpus.ids, offsets[a:b + 1], binary)
                              for a, b in zip(starts[:-1], starts[1:], strict=True)],
                             format="csr")

    def _chunk_counts(self, all_ids: np.ndarray, offsets: np.ndarray,
                      binary: bool) -> sparse.csr_matrix:
        first, width = int(offsets[0]), len(self.codes)
        digits = np.asarray(all_ids[first:offsets[-1]], dtype=np.int64) + 1
        lengths = np.diff(offsets)
        document = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        end = np.repeat(offsets[1:] - first, lengths)  # where each token's document ends
        position = np.arange(len(digits))
        unknown = digits >= self.base  # in no n-gram of the vocabulary
        digits = np.minimum(digits, self.base - 1)
        code = np.zeros(len(digits), dtype=np.int64)  # of the n-gram starting at each token
        spoiled = np.zeros(len(digits), dtype=bool)
        keys = []
        for n in range(1, self.ngram_max + 1):
            code[:len(code) - n + 1] = code[:len(code) - n + 1] * self.base + digits[n - 1:]
            spoiled[:len(code) - n + 1] |= unknown[n - 1:]
            real = (position + n <= end) & ~spoiled
            wanted = code[real]
            found = np.minimum(np.searchsorted(self.codes, wanted), width - 1)
            hit = self.codes[found] == wanted
            keys.append(document[real][hit] * width + self.columns[found[hit]])
        key, count = np.unique(np.concatenate(keys), return_counts=True)  # row-major, sorted
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(np.bincount(key // width, minlength=len(lengths)), out=indptr[1:])
        data = np.ones(len(key), np.float32) if binary else count.astype(np.float32)
        return sparse.csr_matrix((data, key % width, indptr), shape=(len(lengths), width))


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
    index: NgramIndex | None = None  # the vectorizer's vocabulary as codes (a loaded model)

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
        return self.predict_proba_features(self.features(corpus))

    def features(self, corpus: Corpus) -> sparse.csr_matrix:
        """The vectorizer's features of each document: counted with :class:`NgramIndex`
        when the model has one (loaded from a file), the same matrix as the vectorizer's."""
        if self.index is None:
            return self.vectorizer.transform(texts(corpus))
        counts = self.index.counts(corpus, binary=self.weighting == "nb")
        if self.weighting == "nb":
            return counts
        # the vectorizer's own tf-idf step (what its transform applies to the counts)
        return self.vectorizer._tfidf.transform(counts, copy=False)

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
                   blob["C"], NgramIndex.of(blob["ngrams"].numpy())), blob
