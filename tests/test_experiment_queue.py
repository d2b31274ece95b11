"""`dvc exp run --queue` + `dvc queue start`: every experiment's runs land in the main
repository's MLflow store (experiments run in temporary copies under .dvc/tmp/exps)."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest

from tests.conftest import make_project, run, tiny_params

pytestmark = pytest.mark.slow


def test_queued_experiments_all_log_to_the_main_store(tmp_path: Path,
                                                       tiny_archive: Path) -> None:
    root = make_project(tmp_path / "repo", tiny_params(tiny_archive))
    run(["dvc", "repro"], cwd=root)  # creates mlflow.db once, before parallel writers
    run(["git", "add", "-A"], cwd=root)
    run(["git", "commit", "-qm", "baseline"], cwd=root,
        env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
             "GIT_COMMITTER_EMAIL": "t@t"})
    for name, lr in (("exp-a", "0.003"), ("exp-b", "0.004")):
        run(["dvc", "exp", "run", "--queue", "-n", name,
             "-S", f"classifier.rnn_scratch.lr={lr}"], cwd=root)
    run(["dvc", "queue", "start", "-j", "2"], cwd=root)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], cwd=root).stdout
        if status.count("Success") == 2 or "Failed" in status:
            break
        time.sleep(5)
    run(["dvc", "queue", "stop", "--kill"], cwd=root, check=False)
    assert status.count("Success") == 2, status

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("rnn-pretrain-imdb")
    parents = client.search_runs([experiment.experiment_id],
                                 "tags.`pipeline.role` = 'parent'")
    names = {p.info.run_name for p in parents}
    assert {"pipeline:exp-a", "pipeline:exp-b"} <= names, names
    for parent in parents:
        if parent.info.run_name in ("pipeline:exp-a", "pipeline:exp-b"):
            children = client.search_runs(
                [experiment.experiment_id],
                f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
            assert {c.info.run_name for c in children} == {"clf:rnn_scratch", "evaluate"}
            assert all(c.data.tags["dvc.exp_name"] == parent.data.tags["dvc.exp_name"]
                       for c in children)
    assert not list((root / ".dvc" / "tmp" / "exps").rglob("mlflow.db"))
