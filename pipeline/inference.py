"""Class probabilities from a saved classifier, whichever library trained it: the PyTorch
checkpoints of the train stage, or the n-gram baselines of the train_ngrams stage."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipeline.batching import Corpus
from pipeline.config import NGRAM_BASELINES
from pipeline.models import load_checkpoint
from pipeline.runtime import Runtime
from pipeline.tasks import predict_proba


def saved_classifier_proba(variant: str, models_dir: Path, corpus: Corpus, info: dict,
                           runtime: Runtime) -> tuple[np.ndarray, float]:
    """The class probabilities of the classifier saved as ``models_dir/<variant>.pt`` on
    ``corpus`` and the seconds they took; ``info``: data/vocab/info.json, the vocabulary
    it must have been trained with."""
    path = models_dir / f"{variant}.pt"
    if variant in NGRAM_BASELINES:
        from pipeline.ngrams import NgramLogReg  # scikit-learn: only when it is asked for

        ngrams, _ = NgramLogReg.load(path, info["vocab_sha256"])
        started = time.perf_counter()
        return ngrams.predict_proba(corpus), time.perf_counter() - started
    model, blob = load_checkpoint(path, None, info["vocab_size"], info["vocab_sha256"])
    model.to(runtime.device)
    started = time.perf_counter()
    probs = predict_proba(model, corpus, 256, blob["max_len"], runtime.device, runtime)
    return probs, time.perf_counter() - started
