"""pretrain.restart_epochs: a warm restart inside the pretrain stage gives the same language
model as the stage run again with --init on its output (the two-phase recipe measured with
docs/experiments/lm_restart.py), numbers its epochs on across both cycles, and resumes exactly
when killed during the restart, after the first cycle even with other restart settings."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.io import read_json
from pipeline.training import KILL_AFTER_STEPS
from tests.conftest import TinyRun, same_weights, stage


class Pretrain:
    """Runs the pretrain stage on the tiny run's vocabulary, outputs in ``out``."""

    def __init__(self, tiny_run: TinyRun, out: Path) -> None:
        self.data = tiny_run.root / "data/vocab"
        self.params = yaml.safe_load((tiny_run.root / "params.yaml").read_text())
        self.params["runtime"]["checkpoint_dir"] = str(out / "checkpoints")
        self.out = out
        self.env = {"MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}"}

    def run(self, name: str, pretrain: dict, *extra: str, check: bool = True,
            env: dict | None = None) -> subprocess.CompletedProcess:
        """The stage with these pretrain settings, its outputs named ``name``."""
        params = {**self.params, "pretrain": {**self.params["pretrain"], **pretrain}}
        (self.out / f"{name}.yaml").write_text(yaml.safe_dump(params))
        return stage("pretrain", *extra, "--params", str(self.out / f"{name}.yaml"),
                     "--data", str(self.data), "--out", str(self.out / f"{name}.pt"),
                     "--metrics", str(self.out / f"{name}.json"),
                     "--curve", str(self.out / f"{name}.csv"), cwd=self.out,
                     env={**self.env, **(env or {})}, check=check)

    def __call__(self, name: str, pretrain: dict, *extra: str) -> tuple[Path, dict]:
        """The stage run to the end: its model file and metrics."""
        self.run(name, pretrain, *extra)
        return self.out / f"{name}.pt", read_json(self.out / f"{name}.json")


@pytest.fixture
def pretrain(tiny_run: TinyRun, tmp_path: Path) -> Pretrain:
    return Pretrain(tiny_run, tmp_path)


def test_a_restart_is_the_stage_again_with_init(pretrain: Pretrain) -> None:
    # two adaptive-softmax clusters below the tiny vocabulary's size, as the default's
    softmax = {"adaptive_cutoffs": [50, 200]}
    model, metrics = pretrain("one_stage", softmax | {"restart_epochs": 2, "restart_lr": 0.002})
    first, first_metrics = pretrain("first", softmax)
    second, second_metrics = pretrain("second", softmax | {"epochs": 2, "lr": 0.002},
                                      "--init", str(first))
    assert same_weights(model, second)
    assert not same_weights(first, second)
    assert metrics["valid_perplexity"] == second_metrics["valid_perplexity"]
    assert metrics["first_cycle_valid_perplexity"] == first_metrics["valid_perplexity"]
    assert metrics["epochs"] == 4
    assert metrics["tokens"] == first_metrics["tokens"] + second_metrics["tokens"]
    assert "first_cycle_valid_perplexity" not in first_metrics

    curve = pd.read_csv(pretrain.out / "one_stage.csv")
    assert curve["epoch"].tolist() == [1, 2, 3, 4]
    assert curve["cycle"].tolist() == [1, 1, 2, 2]
    assert curve["elapsed_seconds"].is_monotonic_increasing  # timed on across cycles too
    second_curve = pd.read_csv(pretrain.out / "second.csv")
    assert curve["valid_perplexity"].tolist()[2:] == second_curve["valid_perplexity"].tolist()
    assert metrics["best_epoch"] == 2 + second_metrics["best_epoch"]


def test_killed_during_the_restart_resumes_to_the_same_model(pretrain: Pretrain) -> None:
    # 1 x 2 steps, then a restart of 2 x 2: the third step of a stage process is the
    # restart's (each cycle counts its own steps); epochs end in checkpoints
    settings = {"epochs": 1, "steps_per_epoch": 2, "restart_epochs": 2}
    reference, expected = pretrain("reference", settings)
    checkpoints = pretrain.out / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())

    killed = pretrain.run("resumed", settings, check=False, env={KILL_AFTER_STEPS: "3"})
    assert killed.returncode == -9
    assert not (pretrain.out / "resumed.pt").exists()
    assert sorted(p.name for p in checkpoints.iterdir()) == ["pretrain.pt",
                                                             "pretrain_restart.pt"]
    resumed, metrics = pretrain("resumed", settings)
    assert same_weights(resumed, reference)
    assert metrics["valid_perplexity"] == expected["valid_perplexity"]
    assert metrics["epochs"] == expected["epochs"] == 3
    assert not any(checkpoints.iterdir())


def test_other_restart_settings_resume_after_the_first_cycle(pretrain: Pretrain) -> None:
    # killed in the restart, then run with another restart_lr: the first cycle's checkpoint
    # (its schedule does not depend on the restart's settings) is reused, the restart's is not
    settings = {"epochs": 1, "steps_per_epoch": 2, "restart_epochs": 2}
    killed = pretrain.run("changed", settings, check=False, env={KILL_AFTER_STEPS: "3"})
    assert killed.returncode == -9
    changed = settings | {"restart_lr": 0.0005}
    rerun = pretrain.run("changed", changed)
    assert "[pretrain] resuming from" in rerun.stdout
    assert "pretrain_restart.pt is from other settings" in rerun.stdout
    reference, _ = pretrain("reference", changed)
    assert same_weights(pretrain.out / "changed.pt", reference)
