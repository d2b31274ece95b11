"""Studies: real `dvc exp run --queue` sweeps on the tiny project, collected into reports."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

import pipeline.studies
from pipeline.config import VARIANTS, StudiesParams, StudyPoint, load_params
from pipeline.errors import PipelineError
from pipeline.studies import NO_WORKERS, queue_point, queue_rows, queue_states, study_points
from tests.conftest import TinyRun, copy_project, ran_stages, run, stop_queue_workers

pytestmark = pytest.mark.slow

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}


# `dvc queue status` as it stood in a run where a worker took a task and shut down ("empty
# queue") before running it: the task stayed Running with no worker (2026-11-27)
ORPHANED_STATUS = """\
Task     Name                   Created    Status
182b67f  budget-lm_short        08:00 AM   Running
bb9c839  lc-n8                  07:55 AM   Success
efe95fd  ablation-base          07:57 AM   Success
ce3709a  ablation-last_pooling  07:57 AM   Success

Worker status: 0 active, 0 idle
"""


def test_queue_states_reads_dvc_queue_status() -> None:
    names = ["budget-lm_short", "budget-lm_long", "lc-n8"]
    assert queue_states(ORPHANED_STATUS, names) == {"budget-lm_short": "Running",
                                                     "lc-n8": "Success"}
    assert NO_WORKERS in ORPHANED_STATUS  # what `studies` takes for "no worker at all"
    assert queue_rows(ORPHANED_STATUS, names)[0] == ("182b67f", "budget-lm_short", "Running")
    # queued again after being killed: the old row stays (Failed) next to the new one
    requeued = ORPHANED_STATUS.replace("182b67f  budget-lm_short        08:00 AM   Running",
                                       "94bf70d  budget-lm_short        08:15 AM   Running\n"
                                       "182b67f  budget-lm_short        08:00 AM   Failed")
    assert queue_states(requeued, names)["budget-lm_short"] == "Running"
    done = requeued.replace("08:15 AM   Running", "08:15 AM   Success")
    assert queue_states(done, names)["budget-lm_short"] == "Success"


def test_study_points_layer_common_then_ablation_base_then_own_overrides() -> None:
    studies = StudiesParams(
        common={"classifier.max_len": 400, "classifier.patience": 3},
        learning_curve={"n8": StudyPoint(set={"classifier.train_examples": 8,
                                              "classifier.patience": 5})},
        ablation={"base": StudyPoint(set={"classifier.train_examples": 16}),
                  "last": StudyPoint(set={"classifier.rnn_pretrained.pooling": "last",
                                          "classifier.max_len": 200}, description="d")},
    )
    params = load_params(Path(__file__).parents[1] / "params.yaml")
    params = params.model_copy(update={"studies": studies})
    assert study_points(params, "learning_curve")["n8"].set == {
        "classifier.max_len": 400, "classifier.patience": 5, "classifier.train_examples": 8}
    ablation = study_points(params, "ablation")
    assert ablation["base"].set == {"classifier.max_len": 400, "classifier.patience": 3,
                                    "classifier.train_examples": 16}
    assert ablation["last"].set == {"classifier.max_len": 200, "classifier.patience": 3,
                                    "classifier.train_examples": 16,
                                    "classifier.rnn_pretrained.pooling": "last"}
    assert ablation["last"].description == "d"
    with pytest.raises(PipelineError, match="no points in studies.pretraining_budget"):
        study_points(params, "pretraining_budget")
    misspelt = studies.model_copy(update={"learning_curve": {
        "n8": StudyPoint(set={"classifier.rnn_pretrained.poolng": "last"})}})
    with pytest.raises(PipelineError, match=r"studies.learning_curve.n8:\n.*poolng: unknown key"):
        study_points(params.model_copy(update={"studies": misspelt}), "learning_curve")
    too_long = studies.model_copy(update={"common": {"classifier.max_len": 2}})
    with pytest.raises(PipelineError, match="classifier.max_len"):  # out of range, via common
        study_points(params.model_copy(update={"studies": too_long}), "ablation")


def test_every_study_point_in_params_yaml_is_valid() -> None:
    params = load_params(Path(__file__).parents[1] / "params.yaml")
    for study in ("learning_curve", "ablation", "pretraining_budget", "full_configuration"):
        assert study_points(params, study)  # validates each point's overrides, or raises


def test_learning_curve_and_ablation_sweeps(tmp_path: Path, tiny_run: TinyRun,
                                            request: pytest.FixtureRequest) -> None:
    studies = {
        "learning_curve": {
            "n8": {"set": {"classifier.train_examples": 8, "classifier.rnn_scratch.epochs": 1}},
        },
        "ablation": {
            "base": {"description": "16 labels", "set": {"classifier.train_examples": 16}},
            "last_pooling": {"description": "last hidden state only",
                             "set": {"classifier.rnn_pretrained.pooling": "last"}},
        },
        "pretraining_budget": {"lm_short": {"set": {"pretrain.epochs": 1}}},
    }
    # the session's tiny run, with these study points: no stage reads `studies`
    root = copy_project(tiny_run.root, tmp_path / "repo")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["studies"] = studies  # replace (not merge into) the real study points
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(run(["dvc", "repro"], cwd=root).stdout) == []
    run(["git", "add", "-A"], cwd=root)
    run(["git", "commit", "-qm", "baseline"], cwd=root, env=GIT_ENV)
    request.addfinalizer(lambda: stop_queue_workers(root))

    out = run([sys.executable, "-m", "pipeline.studies", "learning-curve"], cwd=root)
    assert "Learning curve" in out.stdout
    curve = pd.read_csv(root / "reports/studies/learning_curve.csv")
    full = curve.loc[curve.point == "all", "train_examples"].unique().tolist()
    assert len(full) == 1 and full[0] > 16  # the main run: every labeled example
    assert set(curve.variant) == set(VARIANTS)
    for variant in VARIANTS:
        sizes = sorted(curve.loc[curve.variant == variant, "train_examples"])
        assert sizes == [8, full[0]]
    assert ((curve.ci_low <= curve.accuracy) & (curve.accuracy <= curve.ci_high)).all()
    assert (root / "reports/studies/learning_curve.png").stat().st_size > 10_000
    shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], cwd=root).stdout
    assert "lc-n8" in shown

    run([sys.executable, "-m", "pipeline.studies", "ablation", "--jobs", "2"], cwd=root)
    ablation = pd.read_csv(root / "reports/studies/ablation.csv")
    base = ablation[ablation.point == "base"]
    assert set(base.variant) == set(VARIANTS) and (base.train_examples == 16).all()
    changed = ablation[ablation.point == "last_pooling"]
    assert changed.variant.tolist() == ["rnn_pretrained"]
    assert changed.train_examples.tolist() == [16]  # the base's overrides carried over
    for row in changed.itertuples():  # each compared with the same variant in the base
        in_base = base[base.variant == row.variant].accuracy.item()
        assert row.delta_vs_base == pytest.approx(row.accuracy - in_base)
    assert "last hidden state only" in (root / "reports/studies/ablation.md").read_text()

    # every queued experiment (these ran in temporary copies under .dvc/tmp/exps, the
    # ablation's two at once) logged into the main repository's MLflow store: a parent run
    # per experiment, a child per stage it reran, all tagged with the experiment's name
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("rnn-pretrain-imdb")
    parents = {p.info.run_name: p for p in client.search_runs(
        [experiment.experiment_id], "tags.`pipeline.role` = 'parent'")}
    assert {"pipeline:lc-n8", "pipeline:ablation-base",
            "pipeline:ablation-last_pooling"} <= set(parents)
    for name in ("pipeline:lc-n8", "pipeline:ablation-base", "pipeline:ablation-last_pooling"):
        parent = parents[name]
        children = client.search_runs(
            [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        # fewer labels rerun the classifiers and evaluate; the LM (no labels) is reused
        assert {c.info.run_name for c in children} == {
            *(f"clf:{variant}" for variant in VARIANTS), "evaluate"}
        assert all(c.data.tags["dvc.exp_name"] == parent.data.tags["dvc.exp_name"]
                   for c in children)
    assert not list((root / ".dvc/tmp/exps").rglob("mlflow.db"))

    run([sys.executable, "-m", "pipeline.studies", "pretraining-budget"], cwd=root)
    budget = pd.read_csv(root / "reports/studies/pretraining_budget.csv")
    assert set(budget.config) == {"lm_short", "main run"}
    assert set(budget.variant) == set(VARIANTS)
    # what the experiment reused from the cache (no LM under it) is listed once
    for variant in ("rnn_scratch", "bag_of_embeddings"):
        assert budget.loc[budget.variant == variant, "config"].tolist() == ["main run"]
    by = budget.set_index(["config", "variant"])
    scratch = by.loc[("main run", "rnn_scratch")]
    assert scratch.total_train_seconds == pytest.approx(scratch.train_seconds)
    for config in ("lm_short", "main run"):  # the LM's cost is counted in what starts from it
        pretrained = by.loc[(config, "rnn_pretrained")]
        assert pretrained.total_train_seconds > pretrained.train_seconds
    # a shorter LM: fewer tokens, and the main run's rows are those of the workspace
    assert by.loc[("lm_short", "rnn_pretrained")].lm_tokens < by.loc[
        ("main run", "rnn_pretrained")].lm_tokens
    assert (root / "reports/studies/pretraining_budget.png").stat().st_size > 10_000

    # --report-only rebuilds from what already ran; a study that never ran is an error
    run([sys.executable, "-m", "pipeline.studies", "ablation", "--report-only"], cwd=root)
    params = (root / "params.yaml").read_text().replace("last_pooling", "never_ran")
    (root / "params.yaml").write_text(params)
    failed = run([sys.executable, "-m", "pipeline.studies", "ablation", "--report-only"], cwd=root,
                 check=False)
    assert failed.returncode != 0 and "ablation-never_ran" in failed.stderr


def test_a_task_left_running_without_a_worker_is_queued_again(
        tmp_path: Path, tiny_run: TinyRun, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """DVC's race, reproduced: a worker takes a task (its message moves from the broker's
    `in` to `processed`) and shuts down before running it, so `dvc queue status` shows the
    task Running with no worker, for ever. `studies` kills it, queues it again and waits."""
    root = copy_project(tiny_run.root, tmp_path / "repo")
    run(["git", "add", "-A"], cwd=root)
    run(["git", "commit", "--allow-empty", "-qm", "baseline"], cwd=root, env=GIT_ENV)
    request.addfinalizer(lambda: stop_queue_workers(root))
    monkeypatch.chdir(root)
    monkeypatch.setattr(pipeline.studies, "POLL_SECONDS", 1.0)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    points = {"boe": StudyPoint(set={"classifier.bag_of_embeddings.epochs": 2})}
    queue_point("race", "boe", points["boe"])
    broker = root / ".dvc/tmp/exps/celery/broker"
    [message] = [path for path in (broker / "in").iterdir() if "pidbox" not in path.name]
    shutil.move(message, broker / "processed" / message.name)
    status = run(["dvc", "queue", "status"], cwd=root).stdout
    assert queue_states(status, ["race-boe"]) == {"race-boe": "Running"}
    assert NO_WORKERS in status

    pipeline.studies.wait(points, "race", jobs=1)
    status = run(["dvc", "queue", "status"], cwd=root).stdout
    assert queue_states(status, ["race-boe"]) == {"race-boe": "Success"}
    shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], cwd=root).stdout
    assert "race-boe" in shown
