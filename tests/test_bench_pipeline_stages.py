"""benchmarks/bench_pipeline_stages.py runs, without DVC, the stages DVC would run."""

from __future__ import annotations

import sys

import pytest
import yaml

from benchmarks.bench_pipeline_stages import stage_commands
from pipeline.config import load_params
from tests.conftest import REPO, run

# DVC commands in this repository itself: never two at once under pytest-xdist
pytestmark = pytest.mark.xdist_group("dvc_in_repo")


def settings(directions: list[str], teachers: list[str]) -> dict:
    params = load_params(REPO / "params.yaml").model_dump()
    params["ensemble"]["directions"], params["self_training"]["teachers"] = directions, teachers
    return params


def test_stages_and_commands_are_dvcs_own() -> None:
    commands = stage_commands(REPO / "dvc.yaml", load_params(REPO / "params.yaml").model_dump())
    listed = run(["dvc", "stage", "list", "--name-only"], cwd=REPO).stdout.split()
    assert [name for name, _ in commands] == listed  # same stages, same (file) order
    # the commands DVC resolved at the last `dvc repro` (dvc.lock), foreach items included
    locked = yaml.safe_load((REPO / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    for name, command in commands:
        assert " ".join(command.split()) == " ".join(locked[name]["cmd"].split()), name


def test_foreach_and_matrix_expand_each_item_and_none() -> None:
    names = [name for name, _ in stage_commands(REPO / "dvc.yaml", settings([], []))]
    # a list written out in dvc.yaml always expands; those taken from params.yaml may be empty
    assert [name for name in names if "@" in name] == ["train_ngrams@tfidf_logreg",
                                                       "train_ngrams@nb_logreg"]
    expanded = dict(stage_commands(REPO / "dvc.yaml",
                                   settings(["backward"], ["bag_of_embeddings_lm"])))
    assert "--direction backward" in expanded["pretrain_direction@backward"]
    assert "pseudo_label bag_of_embeddings_lm" in expanded["pseudo_label@bag_of_embeddings_lm"]
    students = [name for name in expanded if name.startswith("train_self_trained@")]
    # DVC's names for a matrix stage: the items joined by "-", in the product's order
    assert students == ["train_self_trained@bag_of_embeddings_lm-rnn_pretrained",
                        "train_self_trained@bag_of_embeddings_lm-bag_of_embeddings_lm"]
    assert "train rnn_pretrained --pseudo-labels" in expanded[students[0]]
    assert "${" not in "".join(expanded.values())


def test_unknown_first_stage_is_a_clear_error() -> None:
    result = run([sys.executable, "benchmarks/bench_pipeline_stages.py", "--from", "pretrian"],
                 cwd=REPO, check=False)
    assert result.returncode != 0
    assert "--from pretrian: no such stage" in result.stderr
    assert "pretrain" in result.stderr
