"""MLflow tracking shared by the stages.

* Tracking URI: ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<repo>/mlflow.db`` where
  ``<repo>`` is the main repository even inside ``dvc exp run --queue/--temp`` workspaces
  (they live under ``<repo>/.dvc/tmp/exps/``), so every experiment lands in one store.
* One parent run per pipeline execution; each stage logs a child run of it. DVC runs
  stages as separate processes, so they find their parent by a shared execution id:
  ``$PIPELINE_RUN_ID`` if set, else the id of the ``dvc`` process that runs them.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Params, flatten
from pipeline.errors import PipelineError
from pipeline.workspace import main_repo_root

if TYPE_CHECKING:
    from mlflow import MlflowClient

PARENT_RUN_NAME = "pipeline"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{main_repo_root() / 'mlflow.db'}"


def is_local_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite:")


@cache
def execution_id() -> str:
    """An id shared by every stage of one ``dvc repro`` / ``dvc exp run`` execution."""
    if os.environ.get("PIPELINE_RUN_ID"):
        return os.environ["PIPELINE_RUN_ID"]
    try:
        import psutil

        process = psutil.Process().parent()
        while process is not None:
            cmdline = " ".join(process.cmdline())
            if "dvc" in Path(process.exe()).name or " dvc " in f" {cmdline} " or "/dvc " in cmdline:
                return f"dvc-{process.pid}-{int(process.create_time())}"
            process = process.parent()
    except Exception:  # no psutil, or a process we may not inspect: a standalone run
        pass
    return f"standalone-{uuid.uuid4().hex[:12]}"


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def connect(existing: bool = False) -> str:
    """Point MLflow at the tracking store and check it answers, before any training.

    ``existing``: only reading from it (a registered model): a local SQLite store that
    does not exist is an error, not a new empty one in the current folder.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import mlflow

    uri = tracking_uri()
    if "://" not in uri and uri != "databricks":  # "host:5000" would be read as a scheme
        raise PipelineError(f"MLFLOW_TRACKING_URI={uri!r} has no scheme: use "
                            "http://<host>:<port> for a tracking server or sqlite:///<path> "
                            "for a local store")
    if existing and is_local_sqlite(uri):
        database = Path(uri.removeprefix("sqlite:///"))
        if not database.is_file():
            raise PipelineError(f"no MLflow tracking store at {database}: run the pipeline "
                                "there first, or set MLFLOW_TRACKING_URI to the store that "
                                "holds the model")
    mlflow.set_tracking_uri(uri)
    lock_path = main_repo_root() / ".mlflow.lock" if is_local_sqlite(uri) else None
    try:
        # a fresh SQLite store is created by its first client: let only one process do it
        with _file_lock(lock_path):
            mlflow.MlflowClient().search_experiments(max_results=1)
    except Exception as exc:
        raise PipelineError(
            f"MLflow tracking store {uri} is not reachable ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Start the server or unset "
            "MLFLOW_TRACKING_URI to use the local SQLite store."
        ) from None
    return uri


@contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def experiment_id(name: str) -> str:
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if is_local_sqlite(mlflow.get_tracking_uri()):
        # artifacts next to the database, not in whatever directory the stage runs in
        location = (main_repo_root() / "mlartifacts" / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def run_in_store(client: MlflowClient, run_id: str) -> bool:
    """Whether the tracking store holds ``run_id`` as a live (not deleted) run."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


def common_tags(params: Params) -> dict[str, str]:
    tags = {"pipeline.execution_id": execution_id(), "dataset": params.data.dataset}
    commit = git_commit(main_repo_root())
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def parent_run_id(params: Params, exp_id: str) -> str:
    import mlflow

    client = mlflow.MlflowClient()
    found = client.search_runs(
        [exp_id],
        filter_string=f"tags.`pipeline.execution_id` = '{execution_id()}' "
                      "and tags.`pipeline.role` = 'parent'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    name = PARENT_RUN_NAME
    if os.environ.get("DVC_EXP_NAME"):
        name = f"{PARENT_RUN_NAME}:{os.environ['DVC_EXP_NAME']}"
    run = client.create_run(exp_id, run_name=name,
                            tags={**common_tags(params), "pipeline.role": "parent"})
    client.log_batch(run.info.run_id, params=[
        mlflow.entities.Param(k, str(v)[:6000]) for k, v in flatten(params).items()])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@contextmanager
def stage_run(params: Params, stage: str, run_name: str,
              sections: tuple[str, ...]) -> Iterator[object]:
    """A child MLflow run for one stage, with its params (``section.key``) and tags."""
    import mlflow

    connect()
    exp_id = experiment_id(params.experiment_name)
    parent = parent_run_id(params, exp_id)
    tags = {**common_tags(params), "dvc.stage": os.environ.get("DVC_STAGE", stage),
            "pipeline.role": "stage"}
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name, parent_run_id=parent,
                          tags=tags) as run:
        mlflow.log_params({k: str(v)[:6000] for k, v in flatten(params, sections).items()})
        log_dataset_input(params, "evaluation" if stage == "evaluate" else "training")
        yield run
    mlflow.MlflowClient().set_terminated(parent)  # the parent's end time follows its last child


RAW_SOURCE = Path("data/raw/source.json")  # written by the fetch stage: files and checksums


def log_dataset_input(params: Params, context: str, source: Path = RAW_SOURCE) -> None:
    """Log the dataset as the run's MLflow dataset input; its digest identifies the raw data
    (the checksums fetch verified), so runs on different data are told apart in the UI."""
    if not source.is_file():
        return  # a stage run outside the pipeline's layout: nothing to identify the data by
    import hashlib
    import warnings

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    with warnings.catch_warnings():  # a local path matches several source types
        warnings.simplefilter("ignore")
        origin = resolve_dataset_source(str(source.parent.resolve()))
    mlflow.log_input(MetaDataset(origin, name=params.data.dataset, digest=digest),
                     context=context)


def log_epoch(metrics: dict[str, float], epoch: int, prefix: str = "") -> None:
    import mlflow

    mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in metrics.items() if k != "epoch"},
                       step=epoch)
