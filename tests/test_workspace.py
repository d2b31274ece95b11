"""The user's repository, found from a DVC experiment's temporary workspace too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.workspace import main_repo_root, repo_of_experiment_workspace, user_path
from tests.conftest import make_project, run, sha256, tiny_params


def test_an_experiment_workspace_names_its_repository(tmp_path: Path) -> None:
    workspace = tmp_path / "repo/.dvc/tmp/exps/standalone/tmpab12"
    assert repo_of_experiment_workspace(workspace) == tmp_path / "repo"
    assert repo_of_experiment_workspace(workspace / "data") == tmp_path / "repo"
    assert repo_of_experiment_workspace(tmp_path / "repo") is None
    assert repo_of_experiment_workspace(tmp_path / "repo/.dvc/tmp") is None


def test_params_paths_are_the_users_repository_s(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = tmp_path / "repo/.dvc/tmp/exps/tmpab12"
    workspace.mkdir(parents=True)
    monkeypatch.chdir(workspace)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert main_repo_root() == tmp_path / "repo"
    assert user_path("../shared/data/a.tar.gz") == tmp_path / "repo/../shared/data/a.tar.gz"
    assert user_path("/abs/a.tar.gz") == Path("/abs/a.tar.gz")
    (workspace / "own.csv").write_text("text,label\n")  # committed: the experiment's copy
    assert user_path("own.csv") == Path("own.csv")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "other"))  # as `dvc repro` sets it
    assert main_repo_root() == tmp_path / "other"


@pytest.mark.slow
def test_a_queued_experiment_finds_a_mirror_outside_the_repository(
        tmp_path: Path, tiny_archive: Path) -> None:
    # params.yaml's mirror is ../shared/data/...: relative to the repository root, not to
    # the experiment's temporary copy of it, where that path leads nowhere
    mirror = tmp_path / "mirror" / tiny_archive.name
    mirror.parent.mkdir()
    shutil.copy(tiny_archive, mirror)
    params = tiny_params(tiny_archive, fetch={"retries": 0})
    params["fetch"]["mirrors"] = {"imdb": {mirror.name: {
        "path": f"../mirror/{mirror.name}", "sha256": sha256(mirror)}}}
    root = make_project(tmp_path / "repo", params)
    dead_proxy = {"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    result = run(["dvc", "exp", "run", "--temp", "fetch"], cwd=root, env=dead_proxy)
    assert f"using local copy ../mirror/{mirror.name}" in result.stdout
