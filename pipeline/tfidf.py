"""TF-IDF + logistic regression: the strong, cheap bag-of-words baseline (scikit-learn).

It reads the same token ids as every other classifier (the vocabulary's, so a word outside
it is ``<unk>`` here too) and whole reviews, however long: a bag of n-grams costs nothing
per extra token. The regularization strength C is chosen on valid from a grid, as the
baselines in the literature are tuned. Saved as a plain ``torch.save`` dict of tensors and
numbers (loaded with ``weights_only=True``, like the other checkpoints: no pickle to trust).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.batching import Corpus
from pipeline.config import TFIDF_BASELINE
from pipeline.errors import PipelineError
from pipeline.models import read_checkpoint

KIND = TFIDF_BASELINE  # the saved dict's "kind"


def texts(corpus: Corpus) -> list[str]:
    """Each document as its token ids written out, space-separated (what the vectorizer
    splits into n-grams)."""
    bounds = corpus.offsets
    return [" ".join(map(str, corpus.ids[start:end].tolist()))
            for start, end in zip(bounds[:-1], bounds[1:], strict=True)]


@dataclass
class TfidfLogReg:
    vectorizer: object  # sklearn TfidfVectorizer, fitted
    model: object  # sklearn LogisticRegression, fitted
    C: float

    @classmethod
    def fit(cls, train: Corpus, valid: Corpus, C_grid: list[float], ngram_max: int,
            min_df: int, max_iter: int, seed: int) -> tuple[TfidfLogReg, list[dict]]:
        """The model of the grid's C with the best valid accuracy (the smaller C on a tie),
        and one row per C: ``C``, ``valid_accuracy``, ``seconds``."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        vectorizer = TfidfVectorizer(token_pattern=r"\S+", ngram_range=(1, ngram_max),
                                     min_df=min_df, sublinear_tf=True, dtype=np.float32)
        try:
            train_x = vectorizer.fit_transform(texts(train))
        except ValueError as exc:  # e.g. min_df above every n-gram's document count
            raise PipelineError(f"TF-IDF features: {exc} (classifier.tfidf_logreg)") from None
        valid_x = vectorizer.transform(texts(valid))
        best, history = None, []
        for C in sorted(C_grid):
            started = time.perf_counter()
            model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
            model.fit(train_x, train.labels)
            accuracy = float((model.predict(valid_x) == valid.labels).mean())
            history.append({"C": C, "valid_accuracy": accuracy,
                            "seconds": time.perf_counter() - started})
            if best is None or accuracy > best[0]:
                best = (accuracy, cls(vectorizer, model, C))
        return best[1], history

    def predict_proba(self, corpus: Corpus) -> np.ndarray:
        """Class probabilities, one row per document, columns in label-id order."""
        # train holds every class (labeled_sample keeps each one): columns = label ids
        return self.model.predict_proba(self.vectorizer.transform(texts(corpus)))

    def save(self, path: Path, extra: dict) -> None:
        vocabulary = self.vectorizer.vocabulary_
        terms = sorted(vocabulary, key=vocabulary.__getitem__)
        # n-grams as rows of token ids (-1 pads the shorter ones): no strings to store
        width = self.vectorizer.ngram_range[1]
        grams = np.full((len(terms), width), -1, dtype=np.int64)
        for row, term in enumerate(terms):
            ids = term.split(" ")
            grams[row, :len(ids)] = [int(i) for i in ids]
        torch.save({"kind": KIND, "ngrams": torch.from_numpy(grams),
                    "idf": torch.from_numpy(self.vectorizer.idf_.astype(np.float64)),
                    "coef": torch.from_numpy(self.model.coef_),
                    "intercept": torch.from_numpy(self.model.intercept_),
                    "classes": self.model.classes_.tolist(), "C": self.C,
                    "ngram_max": width, "min_df": self.vectorizer.min_df, **extra}, path)

    @classmethod
    def load(cls, path: Path, vocab_sha256: str) -> tuple[TfidfLogReg, dict]:
        """The model and the saved dict (label names, variant...), checked against the
        vocabulary the token ids come from."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        blob = read_checkpoint(path)
        if blob.get("kind") != KIND:
            raise PipelineError(f"{path} is not a TF-IDF + logistic regression model")
        if blob.get("vocab_sha256") != vocab_sha256:
            raise PipelineError(f"{path} was trained with another vocabulary: rerun "
                                "train_tfidf (dvc repro)")
        terms = [" ".join(str(i) for i in row if i >= 0) for row in blob["ngrams"].tolist()]
        vectorizer = TfidfVectorizer(token_pattern=r"\S+", ngram_range=(1, blob["ngram_max"]),
                                     vocabulary={t: k for k, t in enumerate(terms)},
                                     sublinear_tf=True, dtype=np.float32)
        vectorizer.idf_ = blob["idf"].numpy()
        model = LogisticRegression(C=blob["C"])
        model.coef_ = blob["coef"].numpy()
        model.intercept_ = blob["intercept"].numpy()
        model.classes_ = np.asarray(blob["classes"])
        return cls(vectorizer, model, blob["C"]), blob
