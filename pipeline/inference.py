"""Class probabilities from a saved classifier, whichever library trained it: the PyTorch
checkpoints of the train stage, or the n-gram baselines of the train_ngrams stage."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipeline.batching import Corpus
from pipeline.config import NGRAM_KIND
from pipeline.models import model_from_checkpoint, read_checkpoint
from pipeline.runtime import Runtime
from pipeline.tasks import predict_proba


def saved_classifier_proba(variant: str, models_dir: Path, corpus: Corpus, info: dict,
                           runtime: Runtime) -> tuple[np.ndarray, float]:
    """The class probabilities of the classifier saved as ``models_dir/<variant>.pt`` on
    ``corpus`` and the seconds they took; ``info``: data/vocab/info.json, the vocabulary
    it must have been trained with. What the file holds picks the loader, not its name, so
    a copy of a model under any name scores the same."""
    path = models_dir / f"{variant}.pt"
    blob = read_checkpoint(path)
    if blob.get("kind") == NGRAM_KIND:
        from pipeline.ngrams import NgramLogReg  # scikit-learn: only when it is asked for

        ngrams, _ = NgramLogReg.from_checkpoint(blob, path, info["vocab_sha256"])
        started = time.perf_counter()
        return ngrams.predict_proba(corpus), time.perf_counter() - started
    model, blob = model_from_checkpoint(blob, path, None, info["vocab_size"],
                                        info["vocab_sha256"])
    model.to(runtime.device)
    started = time.perf_counter()
    probs = predict_proba(model, corpus, 256, blob["max_len"], runtime.device, runtime)
    return probs, time.perf_counter() - started
