"""pipeline.tracking's helpers against a real (SQLite) MLflow store."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from pipeline.tracking import run_in_store


def test_run_in_store_tells_live_deleted_and_unknown_runs_apart(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("runs", artifact_location=tmp_path.as_uri())
    live = client.create_run(experiment).info.run_id
    deleted = client.create_run(experiment).info.run_id
    client.delete_run(deleted)
    assert run_in_store(client, live)
    assert not run_in_store(client, deleted)  # in the store, but not a run to log onto
    assert not run_in_store(client, "0" * 32)  # trained with another store
