"""A real `mlflow server` (SQLite backend, proxied artifact store) on localhost: the tiny
pipeline logs runs, models and the registry over HTTP; an unreachable server fails fast."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from pipeline.config import VARIANTS
from tests.conftest import make_project, restored_mlflow_tracking_uri, run, tiny_params
from tests.test_serving import (
    MODEL_NAME,
    free_port,
    start_process,
    stop_process,
    wait_until_answers,
)

pytestmark = pytest.mark.slow

STAGE_RUNS = {"pipeline", "pretrain", "evaluate", *[f"clf:{v}" for v in VARIANTS]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``mlflow server`` with one worker; clients upload artifacts through it (proxied)."""
    base = tmp_path_factory.mktemp("server")
    port, log = free_port(), base / "server.log"
    proc = start_process(
        ["mlflow", "server", "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}",
         "--serve-artifacts", "--artifacts-destination", str(base / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        log, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no background job runners
        cwd=base)
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/health", proc, log, timeout=120)
        yield f"http://127.0.0.1:{port}", base / "artifacts"
    finally:
        stop_process(proc)


@pytest.fixture(scope="module", autouse=True)
def global_tracking_uri(server: tuple[str, Path]) -> Iterator[None]:
    """Some client calls resolve model URIs through the global tracking URI: never let
    them fall back to the default (./mlflow.db of the directory pytest runs in)."""
    with restored_mlflow_tracking_uri():
        mlflow.set_tracking_uri(server[0])
        yield


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_archive: Path,
            server: tuple[str, Path]) -> Path:
    root = make_project(tmp_path_factory.mktemp("remote") / "repo", tiny_params(tiny_archive))
    run(["dvc", "repro"], cwd=root, env={"MLFLOW_TRACKING_URI": server[0]})
    return root


def test_pipeline_logs_runs_models_and_registry_to_the_server(
        project: Path, server: tuple[str, Path]) -> None:
    url, artifacts = server
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    experiment = client.get_experiment_by_name("rnn-pretrain-imdb")
    assert experiment is not None
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), "not proxied"
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) >= STAGE_RUNS
    parent = by_name["pipeline"].info.run_id
    for name in STAGE_RUNS - {"pipeline"}:
        assert by_name[name].data.tags["mlflow.parentRunId"] == parent
    for variant in VARIANTS:
        run_ = by_name[f"clf:{variant}"]
        assert "test_accuracy" in run_.data.metrics
        # uploaded through the server into its artifact destination
        assert list(artifacts.glob(f"*/{run_.info.run_id}/artifacts/model/{variant}.pt"))
        models = client.search_logged_models([experiment.experiment_id],
                                             filter_string=f"source_run_id = "
                                                           f"'{run_.info.run_id}'")
        assert len(models) == 1
    assert len(list(artifacts.rglob("MLmodel"))) == len(VARIANTS)  # one per classifier
    assert not (project / "mlflow.db").exists() and not (project / "mlartifacts").exists()
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert champion.tags["variant"] in VARIANTS and "test_accuracy" in champion.tags


def test_predict_with_the_champion_from_the_server(project: Path,
                                                   server: tuple[str, Path]) -> None:
    result = run([sys.executable, "-m", "pipeline.predict", "--model-uri",
                  f"models:/{MODEL_NAME}@champion", "A moving, funny film.", "Dull."],
                 cwd=project, env={"MLFLOW_TRACKING_URI": server[0]})
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert [len(line) for line in lines] == [3, 3]
    assert all(label in ("neg", "pos") and 0.5 <= float(p) <= 1.0 for label, p, _ in lines)


def test_unreachable_tracking_server_fails_fast(project: Path, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = run([sys.executable, "-m", "pipeline.stages.pretrain", "--data", "data/vocab",
                  "--out", str(tmp_path / "lm.pt"), "--metrics", str(tmp_path / "pretrain.json"),
                  "--curve", str(tmp_path / "pretrain.csv")],
                 cwd=project, env={"MLFLOW_TRACKING_URI": closed}, check=False)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-2000:]
    assert "not reachable" in result.stderr and closed in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 60, f"took {elapsed:.0f} s to give up"
    assert not (tmp_path / "lm.pt").exists() and not (tmp_path / "pretrain.json").exists()


def test_dvc_repro_reports_an_unreachable_server(project: Path) -> None:
    """Through DVC too: the stage's message reaches the user and no model is left behind."""
    closed = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(["dvc", "repro", "--force", "--single-item", "pretrain"],
                            cwd=project, env={**os.environ, "MLFLOW_TRACKING_URI": closed},
                            capture_output=True, text=True, timeout=180)
    assert result.returncode != 0
    assert "not reachable" in result.stdout + result.stderr
    assert not (project / "models" / "lm.pt").exists()
