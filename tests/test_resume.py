"""A training stage killed with SIGKILL resumes from its checkpoint and ends exactly
where an uninterrupted run ends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.training import KILL_AFTER_STEPS, KILL_SIGNAL
from tests.conftest import make_project, run, same_weights, stage, tiny_params


def prepare_inputs(root: Path, params: dict, env: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for module in ("fetch", "prepare", "tokenize", "vocab"):
        stage(module, "--params", "params.yaml", cwd=root, env=env)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, tiny_archive: Path) -> Path:
    root = tmp_path_factory.mktemp("resume")
    params = tiny_params(tiny_archive, runtime={"checkpoint_every": 2},
                         pretrain={"epochs": 2, "steps_per_epoch": 5})
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db"}
    prepare_inputs(root, params, env)
    return root


@pytest.mark.parametrize(("module", "args", "output", "metrics"), [
    ("pretrain", [], "models/lm.pt", "reports/pretrain.json"),
    ("train", ["rnn_scratch"], "models/rnn_scratch.pt", "reports/train/rnn_scratch.json"),
    ("train", ["rnn_pretrained"], "models/rnn_pretrained.pt",
     "reports/train/rnn_pretrained.json"),  # the language model is part of its fingerprint
])
def test_killed_stage_resumes_to_the_same_result(workdir: Path, module: str, args: list[str],
                                                 output: str, metrics: str) -> None:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db"}
    stage(module, *args, "--params", "params.yaml", cwd=workdir, env=env)
    reference = workdir / "reference.pt"
    shutil.copy(workdir / output, reference)
    expected = json.loads((workdir / metrics).read_text())
    assert not any((workdir / ".checkpoints").iterdir())  # removed after success

    (workdir / output).unlink()
    killed = stage(module, *args, "--params", "params.yaml", cwd=workdir, check=False,
                   env={**env, KILL_AFTER_STEPS: "3"})
    assert killed.returncode == -9
    assert not (workdir / output).exists()  # no half-written output
    assert len(list((workdir / ".checkpoints").iterdir())) == 1

    resumed = stage(module, *args, "--params", "params.yaml", cwd=workdir, env=env)
    assert "resuming from" in resumed.stdout
    assert same_weights(workdir / output, reference)
    got = json.loads((workdir / metrics).read_text())
    key = "valid_perplexity" if module == "pretrain" else "valid_accuracy"
    assert got[key] == expected[key]
    assert got["epochs"] == expected["epochs"]


def test_checkpoint_from_other_settings_is_ignored(workdir: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db"}
    killed = stage("pretrain", "--params", "params.yaml", cwd=workdir, check=False,
                   env={**env, KILL_AFTER_STEPS: "3"})
    assert killed.returncode == -9
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["pretrain"]["lr"] = 0.001
    (workdir / "other.yaml").write_text(yaml.safe_dump(params))
    fresh = stage("pretrain", "--params", "other.yaml", cwd=workdir, env=env)
    assert "from other settings, data or input files; starting over" in fresh.stdout
    assert "resuming from" not in fresh.stdout


def test_fine_tuning_checkpoint_from_another_language_model_is_ignored(workdir: Path) -> None:
    """The settings and data can be the same while the language model is not (retrained with
    other pretrain settings, or by other code): a fine-tuning killed while it started from
    the old one must not be resumed with the new one (it was, until 2026-12-05: a
    `dvc exp run -S pretrain.epochs=6` resumed a classifier of the old language model)."""
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db"}
    for leftover in (workdir / ".checkpoints").glob("*"):
        leftover.unlink()
    stage("pretrain", "--params", "params.yaml", cwd=workdir, env=env)
    killed = stage("train", "rnn_pretrained", "--params", "params.yaml", cwd=workdir,
                   check=False, env={**env, KILL_AFTER_STEPS: "3"})
    assert killed.returncode == -9
    assert (workdir / ".checkpoints" / "rnn_pretrained.pt").exists()

    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["pretrain"]["lr"] = 0.001  # another language model; the classifier's settings as before
    (workdir / "other_lm.yaml").write_text(yaml.safe_dump(params))
    stage("pretrain", "--params", "other_lm.yaml", cwd=workdir, env=env)
    fresh = stage("train", "rnn_pretrained", "--params", "params.yaml", cwd=workdir, env=env)
    assert "from other settings, data or input files; starting over" in fresh.stdout
    assert "resuming from" not in fresh.stdout


def test_ctrl_c_saves_a_checkpoint_and_says_so(workdir: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db"}
    (workdir / "models" / "lm.pt").unlink(missing_ok=True)
    for leftover in (workdir / ".checkpoints").glob("*"):
        leftover.unlink()
    interrupted = stage("pretrain", "--params", "params.yaml", cwd=workdir, check=False,
                        env={**env, KILL_AFTER_STEPS: "3", KILL_SIGNAL: "INT"})
    assert interrupted.returncode == 130
    assert "interrupted: checkpoint saved to .checkpoints/pretrain.pt" in interrupted.stdout
    assert "Traceback" not in interrupted.stderr
    assert (workdir / ".checkpoints" / "pretrain.pt").exists()
    assert not (workdir / "models" / "lm.pt").exists()
    resumed = stage("pretrain", "--params", "params.yaml", cwd=workdir, env=env)
    assert "resuming from .checkpoints/pretrain.pt: epoch 1, step 3" in resumed.stdout


@pytest.mark.slow
def test_dvc_repro_resumes_after_sigkill(tmp_path: Path, tiny_archive: Path) -> None:
    params = tiny_params(tiny_archive, runtime={"checkpoint_every": 2})
    root = make_project(tmp_path / "repo", params)
    run(["dvc", "repro", "vocab"], cwd=root)
    first = run(["dvc", "repro", "pretrain"], cwd=root, check=False,
                env={KILL_AFTER_STEPS: "3"})
    assert first.returncode != 0
    second = run(["dvc", "repro", "pretrain"], cwd=root)
    assert "resuming from .checkpoints/pretrain.pt" in second.stdout
    assert (root / "models/lm.pt").exists()
    assert run(["dvc", "status", "pretrain"], cwd=root).stdout.strip().endswith("up to date.")


@pytest.mark.slow
def test_killed_experiment_resumes_when_rerun(tmp_path: Path, tiny_archive: Path) -> None:
    # `dvc exp run --queue/--temp` run in a temporary workspace deleted with the experiment,
    # killed or not: the killed stage's checkpoint lives in the main repository instead, so
    # a rerun (DVC's run cache restores the stages that had finished) resumes it there
    params = tiny_params(tiny_archive, runtime={"checkpoint_every": 2})
    root = make_project(tmp_path / "repo", params)
    run(["dvc", "repro", "vocab"], cwd=root)
    experiment = ["dvc", "exp", "run", "--temp", "-n", "long", "pretrain"]
    killed = run(experiment, cwd=root, check=False, env={KILL_AFTER_STEPS: "3"})
    assert killed.returncode != 0
    [checkpoint] = (root / ".checkpoints/exps").glob("*/pretrain.pt")

    rerun = run(experiment, cwd=root)
    assert f"resuming from {checkpoint}: epoch 1, step 2" in rerun.stdout
    assert not checkpoint.parent.exists()  # removed with its folder once the stage succeeded
    [ref] = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/**/long"],
                cwd=root).stdout.split()
    resumed = yaml.safe_load(run(["git", "show", f"{ref}:dvc.lock"], cwd=root).stdout)
    uninterrupted_run = run(["dvc", "repro", "--force", "pretrain"], cwd=root)  # not restored
    assert "Running stage 'pretrain'" in uninterrupted_run.stdout  # from the run cache
    uninterrupted = yaml.safe_load((root / "dvc.lock").read_text())
    [resumed_model, uninterrupted_model] = [
        next(out for out in lock["stages"]["pretrain"]["outs"] if out["path"] == "models/lm.pt")
        for lock in (resumed, uninterrupted)]
    assert resumed_model == uninterrupted_model  # byte for byte
