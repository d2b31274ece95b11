from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import flatten, load_params
from pipeline.errors import PipelineError
from tests.conftest import REPO


def write(tmp_path: Path, mutate) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    mutate(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_repository_params_are_valid() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.model.cell in {"rnn", "lstm", "gru"}
    assert params.experiment_name == "rnn-pretrain-imdb"
    assert flatten(params, ("pretrain",))["pretrain.bptt"] == params.pretrain.bptt


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda p: p["model"].update(cell="transformer"), "model.cell"),
    (lambda p: p["model"].update(hidden=0), "model.hidden"),
    (lambda p: p["pretrain"].update(batch_size=-4), "pretrain.batch_size"),
    (lambda p: p["pretrain"].update(bptt="seventy"), "pretrain.bptt"),
    (lambda p: p["pretrain"].update(bpt=70), "pretrain.bpt: unknown key"),
    (lambda p: p.update(extra_section={}), "extra_section: unknown key"),
    (lambda p: p["vocab"].pop("min_freq") and p.pop("vocab"), "vocab: required key is missing"),
    (lambda p: p["prepare"].update(valid_fraction=1.5), "prepare.valid_fraction"),
    (lambda p: p["pretrain"].update(adaptive_cutoffs=[10000, 2000]), "adaptive_cutoffs"),
    (lambda p: p["fetch"]["mirrors"]["imdb"]["aclImdb_v1.tar.gz"].update(sha256="abc"),
     "fetch.mirrors.imdb.aclImdb_v1.tar.gz.sha256"),
])
def test_invalid_values_name_the_key(tmp_path: Path, mutate, message: str) -> None:
    path = write(tmp_path, mutate)
    with pytest.raises(PipelineError) as error:
        load_params(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="settings file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(PipelineError, match="must be a mapping"):
        load_params(bad)
