"""Class probabilities from a saved classifier, whichever library trained it: the PyTorch
checkpoints of the train stage, or the n-gram baselines of the train_ngrams stage."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from torch import nn

from pipeline.batching import Corpus
from pipeline.config import NGRAM_KIND
from pipeline.models import RNNClassifier, model_from_checkpoint, read_checkpoint
from pipeline.runtime import Runtime
from pipeline.tasks import predict_proba

# cells whose classifier gives the same probabilities, bit for bit, with bf16 weights as with
# fp32 ones under CPU autocast (tests/test_inference.py); the GRU's differ (its state mixes
# in fp32 under autocast)
LOW_PRECISION_EXACT_CELLS = frozenset({"lstm", "rnn"})


def for_inference(model: nn.Module, runtime: Runtime) -> nn.Module:
    """``model`` on the runtime's device, in eval mode, an RNN classifier's weights stored in
    the autocast dtype (bf16) when that changes none of its outputs.

    Under bf16 autocast an LSTM classifier runs in bf16 from its first RNN layer to its head
    anyway; weights already in bf16 skip the casts at every batch and the fp32 word vectors'
    conversion: the same probabilities bit for bit, in 0.93x the time over IMDB's 25,000 test
    reviews (benchmarks/README.md). Other models (the bag of embeddings averages in fp32, a
    GRU mixes in fp32 state) keep their fp32 weights, as does every model on a GPU (not
    checked there, where inference time is not the bottleneck).
    """
    model.to(runtime.device).eval()
    if (runtime.device.type == "cpu" and runtime.amp_dtype is not None
            and isinstance(model, RNNClassifier)
            and model.encoder.config.cell in LOW_PRECISION_EXACT_CELLS):
        model.to(runtime.amp_dtype)
    return model


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
    model = for_inference(model, runtime)
    started = time.perf_counter()
    probs = predict_proba(model, corpus, 256, blob["max_len"], runtime.device, runtime)
    return probs, time.perf_counter() - started
