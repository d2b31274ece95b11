"""pretrain --init: more pretraining of a saved language model (a warm restart) starts from its
weights exactly, and refuses a model that is not the one params.yaml describes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config import load_params, with_overrides
from pipeline.errors import PipelineError
from pipeline.io import read_json
from pipeline.models import EncoderConfig, LanguageModel, read_checkpoint, save_checkpoint
from pipeline.stages.pretrain import load_initial_weights
from tests.conftest import TinyRun, stage


def fresh_model(root: Path, **overrides: object) -> tuple[LanguageModel, dict]:
    """A randomly initialized language model as the tiny run's params (with ``overrides``)
    describe it, and the vocabulary's info."""
    params = with_overrides(load_params(root / "params.yaml"), overrides, "test")
    info = read_json(root / "data/vocab/info.json")
    model = LanguageModel(EncoderConfig.of(params.model, info["vocab_size"]),
                          params.pretrain.softmax, tuple(params.pretrain.adaptive_cutoffs))
    return model, info


def test_init_loads_every_weight_of_the_saved_model(tiny_run: TinyRun) -> None:
    model, info = fresh_model(tiny_run.root)
    saved = read_checkpoint(tiny_run.root / "models/lm.pt")["state_dict"]
    assert any(not torch.equal(model.state_dict()[k], saved[k]) for k in saved)
    load_initial_weights(model, tiny_run.root / "models/lm.pt", "forward", info)
    state = model.state_dict()
    assert set(state) == set(saved)
    for key, value in saved.items():
        assert torch.equal(state[key], value), key


def test_init_refuses_the_other_direction(tiny_run: TinyRun, tmp_path: Path) -> None:
    model, info = fresh_model(tiny_run.root)
    blob = read_checkpoint(tiny_run.root / "models/lm.pt")
    backward = tmp_path / "lm_backward.pt"
    save_checkpoint(backward, "language_model", blob["config"], model,
                    {"vocab_size": info["vocab_size"], "vocab_sha256": info["vocab_sha256"],
                     "direction": "backward"})
    with pytest.raises(PipelineError, match="is a backward language model"):
        load_initial_weights(model, backward, "forward", info)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"model.hidden": 24}, "was trained with encoder"),
    ({"pretrain.softmax": "full"}, "does not fit params.yaml's pretrain.softmax"),
])
def test_init_refuses_another_model(tiny_run: TinyRun, overrides: dict, message: str) -> None:
    model, info = fresh_model(tiny_run.root, **overrides)
    with pytest.raises(PipelineError, match=message):
        load_initial_weights(model, tiny_run.root / "models/lm.pt", "forward", info)


def test_init_refuses_a_classifier(tiny_run: TinyRun) -> None:
    model, info = fresh_model(tiny_run.root)
    with pytest.raises(PipelineError, match="expected 'language_model'"):
        load_initial_weights(model, tiny_run.root / "models/rnn_pretrained.pt", "forward", info)


def test_the_stage_continues_from_the_saved_model(tiny_run: TinyRun, tmp_path: Path) -> None:
    """One more epoch from the tiny run's language model ends at a lower valid perplexity
    than the same epoch from scratch (same seed, same batches), and the run's own model is
    left as it was."""
    root = tiny_run.root
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["pretrain"]["epochs"] = 1
    params["runtime"]["checkpoint_dir"] = str(tmp_path / "checkpoints")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    before = (root / "models/lm.pt").read_bytes()
    perplexity = {}
    for name, extra in (("scratch", []), ("init", ["--init", str(root / "models/lm.pt")])):
        stage("pretrain", *extra, "--params", str(tmp_path / "params.yaml"),
              "--data", str(root / "data/vocab"), "--out", str(tmp_path / f"{name}.pt"),
              "--metrics", str(tmp_path / f"{name}.json"),
              "--curve", str(tmp_path / f"{name}.csv"), cwd=tmp_path, env=env)
        perplexity[name] = read_json(tmp_path / f"{name}.json")["valid_perplexity"]
    original = read_json(root / "reports/pretrain.json")["valid_perplexity"]
    assert perplexity["init"] < perplexity["scratch"], (perplexity, original)
    assert (root / "models/lm.pt").read_bytes() == before
