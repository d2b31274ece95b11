from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import RegistryParams, flatten, load_params
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


def test_classifier_seed_defaults_to_the_runtime_seed(tmp_path: Path) -> None:
    params = load_params(REPO / "params.yaml")
    assert params.classifier.seed is None
    assert params.classifier_seed == params.runtime.seed
    chosen = load_params(write(tmp_path, lambda p: p["classifier"].update(seed=43)))
    assert (chosen.classifier_seed, chosen.runtime.seed) == (43, params.runtime.seed)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda p: p["model"].update(cell="transformer"), "model.cell"),
    (lambda p: p["model"].update(hidden=0), "model.hidden"),
    (lambda p: p["pretrain"].update(batch_size=-4), "pretrain.batch_size"),
    (lambda p: p["pretrain"].update(bptt="seventy"), "pretrain.bptt"),
    (lambda p: p["pretrain"].update(bpt=70), "pretrain.bpt: unknown key"),
    (lambda p: p["pretrain"].update(restart_epochs=-1), "pretrain.restart_epochs"),
    (lambda p: p["pretrain"].update(restart_lr=0), "pretrain.restart_lr"),
    (lambda p: p.update(extra_section={}), "extra_section: unknown key"),
    (lambda p: p["vocab"].pop("min_freq") and p.pop("vocab"), "vocab: required key is missing"),
    (lambda p: p["prepare"].update(valid_fraction=1.5), "prepare.valid_fraction"),
    (lambda p: p["prepare"].update(valid_split="movies"), "prepare.valid_split"),
    (lambda p: p["evaluate"].update(hybrid_with="rnn_scratch"), "evaluate.hybrid_with"),
    (lambda p: p["classifier"]["rnn_scratch"].update(adversarial_epsilon=-1),
     "classifier.rnn_scratch.adversarial_epsilon"),
    (lambda p: p["classifier"]["rnn_pretrained"].update(adversarial_fraction=0),
     "classifier.rnn_pretrained.adversarial_fraction"),
    (lambda p: p["classifier"]["rnn_pretrained"].update(virtual_adversarial_epsilon=-0.5),
     "classifier.rnn_pretrained.virtual_adversarial_epsilon"),
    (lambda p: p["classifier"]["rnn_scratch"].update(virtual_adversarial_batch_size=0),
     "classifier.rnn_scratch.virtual_adversarial_batch_size"),
    (lambda p: p["pretrain"].update(adaptive_cutoffs=[10000, 2000]), "adaptive_cutoffs"),
    (lambda p: p["fetch"]["mirrors"]["imdb"]["aclImdb_v1.tar.gz"].update(sha256="abc"),
     "fetch.mirrors.imdb.aclImdb_v1.tar.gz.sha256"),
    # an infinite LR used to train to nan and "succeed"; no setting takes inf or nan
    (lambda p: p["pretrain"].update(lr=float("inf")), "pretrain.lr"),
    (lambda p: p["gate"].update(max_drop_vs_accepted=float("nan")), "gate.max_drop_vs_accepted"),
    # seeds outside what NumPy / scikit-learn accept used to fail mid-stage
    (lambda p: p["runtime"].update(seed=-1), "runtime.seed"),
    (lambda p: p["classifier"].update(seed=2**32), "classifier.seed"),
    # a fifth tail cluster of hidden 256 would project to 256 / 4^5 = 0 dimensions
    (lambda p: p["pretrain"].update(adaptive_cutoffs=[2000, 5000, 10000, 15000, 20000]),
     "pretrain.adaptive_cutoffs: 5 cutoffs need model.hidden >= 1024"),
    # 2 layers: embedding, 2 RNN layers, head; with 3 epochs the embedding never trains
    (lambda p: p["classifier"]["rnn_pretrained"].update(gradual_unfreezing=True, epochs=3),
     "classifier.rnn_pretrained: gradual_unfreezing thaws one of the 4 layer groups per "
     "epoch (embedding, 2 RNN layers, head), so with epochs 3 the lowest 1 never train"),
    # the bootstrap's resamples: samples x test reviews x 4 bytes
    (lambda p: p["evaluate"].update(bootstrap_samples=100_000), "evaluate.bootstrap_samples"),
    (lambda p: p["prepare"].update(seed=2**40), "prepare.seed"),
    (lambda p: p["evaluate"].update(seed=-7), "evaluate.seed"),
    # the classifiers would read the label as the text
    (lambda p: p["data"]["files"].update(text_column="label"),
     "data.files: Value error, text_column and label_column are both 'label'"),
    # checkpoints share the models' names and are deleted on success
    (lambda p: p["runtime"].update(checkpoint_dir="models"), "runtime.checkpoint_dir"),
    (lambda p: p["runtime"].update(checkpoint_dir="./data/vocab/ckpt"), "runtime.checkpoint_dir"),
    # MLflow refuses these only when evaluate registers the model, after everything else
    (lambda p: p["registry"].update(alias="v1"), "registry.alias"),
    (lambda p: p["registry"].update(alias="Latest"), "registry.alias"),
    (lambda p: p["registry"].update(alias=""), "registry.alias"),
    (lambda p: p["registry"].update(model_name="team/imdb:best"), "registry.model_name"),
])
def test_invalid_values_name_the_key(tmp_path: Path, mutate, message: str) -> None:
    path = write(tmp_path, mutate)
    with pytest.raises(PipelineError) as error:
        load_params(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_a_check_across_keys_does_not_echo_every_setting(tmp_path: Path) -> None:
    """Its input is the whole file: the message used to end with all of params.yaml."""
    path = write(tmp_path, lambda p: p["classifier"]["rnn_pretrained"].update(
        gradual_unfreezing=True, epochs=2))
    with pytest.raises(PipelineError) as error:
        load_params(path)
    message = str(error.value)
    assert "so with epochs 2 the lowest 2 never train: set epochs to at least 4" in message
    assert "studies" not in message and len(message) < 500, message


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


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    """DVC refuses a duplicated key; a stage run on its own must not take the last one."""
    text = (REPO / "params.yaml").read_text().replace("runtime:\n", "runtime:\n  seed: 7\n", 1)
    duplicated = tmp_path / "params.yaml"
    duplicated.write_text(text)
    with pytest.raises(PipelineError, match=r"not valid YAML(.|\n)*found the key 'seed' twice"):
        load_params(duplicated)


def mlflow_accepts(field: str, name: str) -> bool:
    from mlflow.exceptions import MlflowException
    from mlflow.utils import validation

    checks = {"alias": (validation._validate_model_alias_name,
                        validation._validate_model_alias_name_reserved),
              "model_name": (validation._validate_model_name,)}[field]
    try:
        for check in checks:
            check(name)
    except MlflowException:
        return False
    return True


@pytest.mark.parametrize(("field", "name"), [
    *(("alias", name) for name in ["champion", "best-2026_11", "v1", "V22", "latest", "LATEST",
                                   "", "a b", "café", "x" * 256, "v1x"]),
    *(("model_name", name) for name in ["imdb-classifier", "team imdb", "a/b", "a:b", " ", "",
                                        "ünïcode"]),
])
def test_registry_rules_agree_with_mlflow(field: str, name: str) -> None:
    try:
        RegistryParams(**{field: name})
        we_accept = True
    except ValueError:
        we_accept = False
    assert we_accept == mlflow_accepts(field, name)
