"""The shared training loop, on a small task where the answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.batching import Corpus
from pipeline.config import RuntimeParams
from pipeline.errors import PipelineError
from pipeline.models import BagOfEmbeddings
from pipeline.runtime import setup
from pipeline.tasks import ClassifierTask, predict_proba
from pipeline.training import Checkpointing, _load, fit, one_cycle


def keyword_corpus(n: int, seed: int) -> Corpus:
    """Label 1 iff token 7 occurs: learnable by a bag of embeddings."""
    rng = np.random.default_rng(seed)
    docs, labels = [], []
    for _ in range(n):
        doc = rng.integers(8, 40, size=rng.integers(3, 12))
        label = int(rng.integers(0, 2))
        if label:
            doc[rng.integers(0, len(doc))] = 7
        docs.append(doc.astype(np.int32))
        labels.append(label)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(d) for d in docs], out=offsets[1:])
    return Corpus(np.concatenate(docs), offsets, np.asarray(labels))


def test_fit_learns_keeps_best_and_stops_early() -> None:
    runtime = setup(RuntimeParams(threads=1, precision="fp32", seed=0))
    train, valid = keyword_corpus(400, 0), keyword_corpus(100, 1)
    model = BagOfEmbeddings(40, 16, 2, dropout=0.0).to(runtime.device)
    task = ClassifierTask(train, valid, batch_size=16, max_len=20, seed=0, device=runtime.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    scheduler = one_cycle(optimizer, 30 * task.steps_per_epoch)
    result = fit(model, task, optimizer, scheduler, runtime, epochs=30, clip=1.0,
                 monitor="valid_accuracy", higher_is_better=True, patience=3)
    accuracies = [h["valid_accuracy"] for h in result.history]
    assert result.best["valid_accuracy"] == max(accuracies) >= 0.9
    assert result.history[0]["train_loss"] > result.history[result.best_epoch - 1]["train_loss"]
    assert result.stopped_early and len(result.history) < 30
    # the model left behind is the best epoch's, not the last one's
    probs = predict_proba(model, valid, 32, 20, runtime.device)
    assert float((probs.argmax(1) == valid.labels).mean()) == result.best["valid_accuracy"]


def test_training_is_reproducible() -> None:
    def once() -> dict:
        # bit-identical reruns are a CPU guarantee: a few CUDA kernels are nondeterministic
        runtime = setup(RuntimeParams(device="cpu", threads=1, precision="fp32", seed=3))
        model = BagOfEmbeddings(40, 8, 2)
        task = ClassifierTask(keyword_corpus(64, 0), keyword_corpus(32, 1), 8, 20, 0,
                              runtime.device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
        fit(model, task, optimizer, None, runtime, epochs=2, clip=1.0,
            monitor="valid_accuracy", higher_is_better=True)
        return model.state_dict()

    first, second = once(), once()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_diverged_run_stops_with_a_clear_error() -> None:
    """A nan loss (here: weights already nan, as after a too-high LR) stops training at
    once, instead of training on and saving a nan model as if it had succeeded."""
    runtime = setup(RuntimeParams(threads=1, precision="fp32", seed=0))
    model = BagOfEmbeddings(40, 8, 2)
    with torch.no_grad():
        model.embedding.weight[7] = float("nan")
    task = ClassifierTask(keyword_corpus(64, 0), keyword_corpus(32, 1), 8, 20, 0,
                          runtime.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    with pytest.raises(PipelineError, match=r"training diverged: the loss is nan at epoch 1, "
                                            r"step \d+; lower the learning rate"):
        fit(model, task, optimizer, None, runtime, epochs=2, clip=1.0,
            monitor="valid_accuracy", higher_is_better=True)


def test_a_checkpoint_of_another_model_version_is_not_resumed(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture
                                                              ) -> None:
    """Same settings and data, so the fingerprint matches, but written by a model whose
    parameters differ (another version of the code): training starts over, and the new
    model's initial weights are left untouched (no partial load)."""
    runtime = setup(RuntimeParams(device="cpu", threads=1, precision="fp32", seed=0))
    checkpoint = Checkpointing(tmp_path / "bag.pt", every=0, fingerprint="same")
    task = ClassifierTask(keyword_corpus(64, 0), keyword_corpus(32, 1), 8, 20, 0,
                          runtime.device)

    first = BagOfEmbeddings(40, 8, 2)
    fit(first, task, torch.optim.AdamW(first.parameters(), lr=0.01), None, runtime, epochs=1,
        clip=1.0, monitor="valid_accuracy", higher_is_better=True, checkpoint=checkpoint)
    assert checkpoint.path.exists()
    other = BagOfEmbeddings(40, 8, 2)
    other.out = torch.nn.Linear(8, 3)  # another head: same embedding, other output
    initial = {key: value.clone() for key, value in other.state_dict().items()}
    optimizer = torch.optim.AdamW(other.parameters(), lr=0.01)
    assert _load(checkpoint, other, optimizer, None, torch.amp.GradScaler(enabled=False),
                 task) is None
    assert "holds other parameters than this model" in capsys.readouterr().out
    assert all(torch.equal(value, initial[key]) for key, value in other.state_dict().items())
