"""`dvc exp run --queue` + `dvc queue start`: every experiment's runs land in the main
repository's MLflow store (experiments run in temporary copies under .dvc/tmp/exps)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
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
    try:
        _start_queue(root, workers=2)
        status = _wait_for_queue(root, tasks=2, limit_s=600)
    finally:
        _stop_queue(root)
    assert status.count("Success") == 2, status + _worker_logs(root)

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


def _start_queue(root: Path, workers: int) -> None:
    # `dvc queue start` forks a manager per worker that keeps the caller's stdout open until
    # its worker exits: with a pipe there, the call would block for the whole queue (or for
    # ever, if a worker hangs). A file keeps the call short and the wait below bounded.
    with (root / "queue-start.log").open("w") as log:
        subprocess.run(["dvc", "queue", "start", "-j", str(workers)], cwd=root, stdout=log,
                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True,
                       timeout=120)


def _wait_for_queue(root: Path, tasks: int, limit_s: float) -> str:
    """Poll `dvc queue status` until every task succeeded, one failed, or time is up."""
    deadline = time.monotonic() + limit_s
    status = ""
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], cwd=root, timeout=120).stdout
        if status.count("Success") == tasks or "Failed" in status:
            break
        time.sleep(5)
    return status


def _stop_queue(root: Path) -> None:
    """Leave no worker behind: ask DVC first, then signal whatever is still alive."""
    run(["dvc", "queue", "stop", "--kill"], cwd=root, check=False, timeout=120)
    # dvc-task records each worker as JSON; "returncode" stays null while it runs.
    for info_file in (root / ".dvc" / "tmp" / "exps" / "celery").glob("dvc-exp-worker-*.json"):
        info = json.loads(info_file.read_text())
        if info.get("returncode") is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(info["pid"]), signal.SIGKILL)


def _worker_logs(root: Path) -> str:
    logs = sorted((root / ".dvc" / "tmp" / "exps" / "celery").glob("*.out"))
    return "".join(f"\n--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}"
                   for log in logs)
