from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from tests.tiny_imdb import build_archive

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Small enough to run the whole pipeline in about a minute on 2 cores.
TINY_OVERRIDES = {
    "fetch": {"expect_full_size": False},
    "prepare": {"valid_fraction": 0.2},
    "tokenize": {"workers": 1, "batch_size": 16},
    "vocab": {"min_freq": 1, "max_size": 500},
    "model": {"embedding_dim": 16, "hidden": 16, "layers": 1},
    "pretrain": {"batch_size": 4, "bptt": 8, "epochs": 2, "steps_per_epoch": 5},
    "classifier": {"max_len": 64, "batch_size": 8,
                   "rnn_pretrained": {"epochs": 2}, "rnn_scratch": {"epochs": 2},
                   "bag_of_embeddings": {"epochs": 3, "embedding_dim": 8, "batch_size": 8}},
    "ensemble": {"directions": []},  # the backward stages have their own e2e test
    "evaluate": {"bootstrap_samples": 200},
    "runtime": {"threads": 1},
}


def merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_weights(a: Path, b: Path) -> bool:
    """Whether two of the pipeline's model files hold the same weights, bit for bit."""
    import torch

    sa = torch.load(a, weights_only=True)["state_dict"]
    sb = torch.load(b, weights_only=True)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_archive(tmp_path_factory.mktemp("tiny") / "aclImdb_v1.tar.gz")


def tiny_params(archive: Path, **overrides: dict) -> dict:
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    params = merge(base, TINY_OVERRIDES)
    params["fetch"]["mirrors"] = {"imdb": {"aclImdb_v1.tar.gz": {
        "path": str(archive), "sha256": sha256(archive)}}}
    return merge(params, overrides)


@pytest.fixture
def params_file(tmp_path: Path, tiny_archive: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(tiny_archive)))
    return path


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True,
        timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command, capturing its output; a command that hangs fails the test after
    `timeout` seconds with what it printed so far, instead of stalling the suite."""
    try:
        result = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})},
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"{' '.join(cmd)} did not finish in {timeout:.0f} s:\n"
                             f"{_text(error.stdout)[-4000:]}\n{_text(error.stderr)[-4000:]}"
                             ) from None
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def stage(module: str, *args: str, cwd: Path, env: dict | None = None,
          check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", f"pipeline.stages.{module}", *args], cwd=cwd, env=env,
               check=check)


def stop_queue_workers(root: Path) -> None:
    """Leave no `dvc queue` worker of `root` running: ask DVC first, then kill what is
    left (a worker whose shutdown message was lost idles for ever)."""
    run(["dvc", "queue", "stop", "--kill"], cwd=root, check=False, timeout=120)
    # dvc-task records each worker as JSON; "returncode" stays null while it runs
    for info_file in (root / ".dvc/tmp/exps/celery").glob("dvc-exp-worker-*.json"):
        info = json.loads(info_file.read_text())
        if info.get("returncode") is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(info["pid"]), signal.SIGKILL)


def make_project(dest: Path, params: dict, code: Path = REPO) -> Path:
    """A fresh git + DVC repository holding this project's code (or that of another checkout
    of it, ``code``) and the given params."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("pipeline", "dvc.yaml", "pyproject.toml"):
        source = code / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)
    shutil.copy2(code / ".gitignore", dest / ".gitignore")
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    run(["git", "init", "-q"], cwd=dest)
    run(["dvc", "init", "-q"], cwd=dest)
    run(["git", "add", "-A"], cwd=dest)
    run(["git", "commit", "-qm", "init"], cwd=dest, env=env)
    return dest


def ran_stages(output: str) -> list[str]:
    """The stages a `dvc repro` ran, in order, from its output."""
    return [line.split("'")[1] for line in output.splitlines()
            if line.startswith("Running stage '")]


class TinyRun(NamedTuple):
    root: Path
    output: str  # what the first `dvc repro` printed


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_archive: Path) -> TinyRun:
    """One whole `dvc repro` of the tiny project with the default tiny params. Tests that
    need a project that has run work on their own copy (`copy_project`): never change it."""
    root = make_project(tmp_path_factory.mktemp("tiny_run") / "repo", tiny_params(tiny_archive))
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}  # its own store, always
    return TinyRun(root, run(["dvc", "repro"], cwd=root, env=env).stdout)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (--dist loadgroup) every test that uses `tiny_run`, directly or
    through a fixture, runs on one worker: the one that made the run. So do the tests of a
    module that use one of its module-scoped fixtures (most run a pipeline): spread over
    both workers, each worker built it (the tracking server's project twice, 3 + 2 min)."""
    for item in items:
        if "tiny_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("tiny_run"))
        elif uses_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def uses_module_fixture(item: pytest.Item) -> bool:
    # pytest's record of the fixtures an item resolves, the closest definition last
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and any(defs and defs[-1].scope == "module"
                                    for defs in info.name2fixturedefs.values())


def copy_project(source: Path, dest: Path) -> Path:
    """A copy of a project that has run, as if it had run in `dest`. MLflow stores absolute
    artifact paths (in mlflow.db and in each MLmodel file): they are moved to the copy, so
    nothing in it reads or writes the original's artifacts."""
    shutil.copytree(source, dest, symlinks=True)
    old, new = str(source), str(dest)
    with contextlib.closing(sqlite3.connect(dest / "mlflow.db")) as db, db:
        tables = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
        for table in tables:
            for column in [row[1] for row in db.execute(f"PRAGMA table_info('{table}')")]:
                db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                           f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0',
                           (old, new, old))
    for mlmodel in (dest / "mlartifacts").rglob("MLmodel"):
        mlmodel.write_text(mlmodel.read_text().replace(old, new))
    return dest


@pytest.fixture
def pipeline_env(tmp_path: Path) -> dict:
    """Environment for stage subprocesses: the project importable, MLflow in tmp_path."""
    return {"PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
            "PIPELINE_CACHE_DIR": str(tmp_path / "cache")}


@contextlib.contextmanager
def restored_mlflow_tracking_uri() -> Iterator[None]:
    """mlflow.set_tracking_uri() also sets $MLFLOW_TRACKING_URI for subprocesses: put both
    back as they were after the block (also when the variable was unset: restoring through
    mlflow.get_tracking_uri() leaves it set to the default store of pytest's directory), or a
    later `dvc repro` logs into another test's store."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        yield
    finally:
        if os.environ.get("MLFLOW_TRACKING_URI") != saved:
            import mlflow

            mlflow.set_tracking_uri(saved)
            if saved is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(autouse=True)
def _restore_mlflow_tracking_uri() -> Iterator[None]:
    with restored_mlflow_tracking_uri():
        yield
