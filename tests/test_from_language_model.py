"""What rnn_pretrained takes from the language model: its whole encoder (the default) or its
word embeddings alone (classifier.rnn_pretrained.from_language_model: embeddings), the RNN
layers then starting where rnn_scratch's do."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import load_params, with_overrides
from pipeline.errors import PipelineError
from pipeline.io import read_json
from pipeline.stages.train import build, pretrained_encoder
from tests.conftest import TinyRun


def built(tiny_run: TinyRun, variant: str, **overrides: object) -> dict[str, torch.Tensor]:
    """The encoder weights ``variant`` starts training from, on the tiny run's LM."""
    root = tiny_run.root
    params = with_overrides(load_params(root / "params.yaml"), overrides, "test")
    info = read_json(root / "data/vocab/info.json")
    torch.manual_seed(params.classifier_seed)  # as train_classifier seeds before building
    model, *_ = build(variant, params, info["vocab_size"], info["vocab_sha256"],
                      len(info["label_names"]), root / "models/lm.pt")
    return model.encoder.state_dict()


def test_embeddings_alone_leave_the_rnn_layers_as_scratch_starts_them(
        tiny_run: TinyRun) -> None:
    root = tiny_run.root
    params = load_params(root / "params.yaml")
    info = read_json(root / "data/vocab/info.json")
    lm = pretrained_encoder(root / "models/lm.pt", params, info["vocab_size"],
                            info["vocab_sha256"]).state_dict()
    whole = built(tiny_run, "rnn_pretrained")
    embeddings = built(tiny_run, "rnn_pretrained",
                       **{"classifier.rnn_pretrained.from_language_model": "embeddings"})
    scratch = built(tiny_run, "rnn_scratch")
    rnn_keys = [key for key in lm if key.startswith("rnns.")]
    assert rnn_keys and set(lm) == {"embedding.weight", *rnn_keys}
    for key in lm:  # the default: every tensor of the language model's encoder
        assert torch.equal(whole[key], lm[key]), key
    assert torch.equal(embeddings["embedding.weight"], lm["embedding.weight"])
    for key in rnn_keys:  # embeddings alone: the RNN layers are rnn_scratch's init
        assert torch.equal(embeddings[key], scratch[key]), key
        assert not torch.equal(embeddings[key], lm[key]), key
    assert not torch.equal(scratch["embedding.weight"], lm["embedding.weight"])


def test_rnn_scratch_takes_nothing_from_the_language_model(tiny_run: TinyRun) -> None:
    with pytest.raises(PipelineError, match="rnn_scratch starts from a random init"):
        with_overrides(load_params(tiny_run.root / "params.yaml"),
                       {"classifier.rnn_scratch.from_language_model": "embeddings"}, "test")
