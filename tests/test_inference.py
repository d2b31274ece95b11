"""saved_classifier_proba: what a model file holds picks its loader, not the file's name, so
a copy of any classifier under another name (as compare_with_committed_run.py needs) scores
the same as the original."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.inference import for_inference, saved_classifier_proba
from pipeline.models import (
    BagOfEmbeddings,
    EncoderConfig,
    RNNClassifier,
    encoder_dict,
    save_checkpoint,
)
from pipeline.ngrams import NgramLogReg
from pipeline.runtime import Runtime, cpu_has_bf16
from pipeline.tasks import predict_proba
from tests.test_ngrams import reviews

VOCAB = {"vocab_size": 50, "vocab_sha256": "a" * 64}
CPU = Runtime(torch.device("cpu"), None)


def test_an_ngram_model_scores_the_same_under_any_name(tmp_path: Path) -> None:
    train, valid = reviews(60, seed=1), reviews(40, seed=2)
    model, _ = NgramLogReg.fit(train, valid, "nb", [1.0], ngram_max=2, min_df=1,
                               max_iter=1000, seed=0)
    model.save(tmp_path / "nb_logreg.pt", {"vocab_sha256": VOCAB["vocab_sha256"]})
    shutil.copy(tmp_path / "nb_logreg.pt", tmp_path / "nb_n1000_s43.pt")
    original, _ = saved_classifier_proba("nb_logreg", tmp_path, valid, VOCAB, CPU)
    renamed, _ = saved_classifier_proba("nb_n1000_s43", tmp_path, valid, VOCAB, CPU)
    np.testing.assert_array_equal(renamed, original)
    np.testing.assert_array_equal(original, model.predict_proba(valid))
    with pytest.raises(PipelineError, match="another vocabulary"):
        saved_classifier_proba("nb_n1000_s43", tmp_path, valid,
                               {**VOCAB, "vocab_sha256": "b" * 64}, CPU)


def test_an_rnn_checkpoint_under_an_ngram_baselines_name_loads_as_an_rnn(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=50, embedding_dim=12, hidden=16, layers=2)
    model = RNNClassifier(config, n_classes=2)
    save_checkpoint(tmp_path / "nb_logreg.pt", "rnn_classifier",
                    {"encoder": encoder_dict(config), "n_classes": 2, "head_dropout": 0.0},
                    model, {"max_len": 30, **VOCAB})
    data = reviews(10, seed=3)
    probs, _ = saved_classifier_proba("nb_logreg", tmp_path, data, VOCAB, CPU)
    assert probs.shape == (10, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    model.eval()
    with torch.no_grad():  # the first review alone, read by the model directly
        tokens = torch.from_numpy(data.ids[data.offsets[0]:data.offsets[1]].astype(np.int64))
        expected = torch.softmax(model(tokens[None], torch.tensor([len(tokens)])), -1)
    np.testing.assert_allclose(probs[0], expected[0].numpy(), rtol=1e-5, atol=1e-6)


def test_a_missing_model_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="missing model file: .*tfidf_logreg.pt"):
        saved_classifier_proba("tfidf_logreg", tmp_path, reviews(4, seed=1), VOCAB, CPU)


@pytest.mark.skipif(not cpu_has_bf16(), reason="needs a CPU with native bf16 (AVX-512-BF16 or AMX)")
@pytest.mark.parametrize("cell", ["lstm", "rnn", "gru"])
def test_bf16_weights_for_inference_change_no_probability(cell: str) -> None:
    """Under bf16 autocast an LSTM (or plain RNN) classifier loaded for inference keeps its
    weights in bf16: not one probability differs from the fp32 model's under autocast. A GRU
    (whose state mixes in fp32) keeps fp32 weights."""
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=50, cell=cell, embedding_dim=12, hidden=16, layers=2)
    model = RNNClassifier(config, n_classes=2)
    bf16 = Runtime(torch.device("cpu"), torch.bfloat16)
    data = reviews(40, seed=4)
    expected = predict_proba(model.eval(), data, 16, 30, bf16.device, bf16)
    loaded = for_inference(copy.deepcopy(model), bf16)
    dtype = torch.float32 if cell == "gru" else torch.bfloat16
    assert {p.dtype for p in loaded.parameters()} == {dtype}
    np.testing.assert_array_equal(predict_proba(loaded, data, 16, 30, bf16.device, bf16), expected)
    fp32 = for_inference(copy.deepcopy(model), CPU)  # no autocast: nothing is cast
    assert {p.dtype for p in fp32.parameters()} == {torch.float32}


def test_a_bag_of_embeddings_keeps_fp32_weights_for_inference() -> None:
    model = BagOfEmbeddings(vocab_size=50, embedding_dim=8, n_classes=2)
    loaded = for_inference(model, Runtime(torch.device("cpu"), torch.bfloat16))
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
