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


def test_stages_and_commands_are_dvcs_own() -> None:
    directions = list(load_params(REPO / "params.yaml").ensemble.directions)
    commands = stage_commands(REPO / "dvc.yaml", directions)
    listed = run(["dvc", "stage", "list", "--name-only"], cwd=REPO).stdout.split()
    assert [name for name, _ in commands] == listed  # same stages, same (file) order
    # the commands DVC resolved at the last `dvc repro` (dvc.lock), foreach items included
    locked = yaml.safe_load((REPO / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    for name, command in commands:
        assert " ".join(command.split()) == " ".join(locked[name]["cmd"].split()), name


def test_foreach_expands_each_direction_and_none() -> None:
    names = [name for name, _ in stage_commands(REPO / "dvc.yaml", [])]
    assert not [name for name in names if "@" in name]
    backward = dict(stage_commands(REPO / "dvc.yaml", ["backward"]))
    assert "--direction backward" in backward["pretrain_direction@backward"]
    assert "${" not in "".join(backward.values())


def test_unknown_first_stage_is_a_clear_error() -> None:
    result = run([sys.executable, "benchmarks/bench_pipeline_stages.py", "--from", "pretrian"],
                 cwd=REPO, check=False)
    assert result.returncode != 0
    assert "--from pretrian: no such stage" in result.stderr
    assert "pretrain" in result.stderr
