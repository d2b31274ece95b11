"""The committed dvc.lock and reports/ are a run of the committed code and params: in this
repository `dvc status` names no stage whose command or params changed since, or whose
git-tracked dependencies or outputs (code, committed reports) differ from what dvc.lock
recorded. A clone holds no DVC cache, so data and models it lacks are expected. After a
change that leaves the run's results as they were:
docs/experiments/relock_committed_run.py."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import REPO, run

# DVC commands in this repository run one at a time (test_bench_pipeline_stages' too)
pytestmark = pytest.mark.xdist_group("dvc_in_repo")


def tracked(path: str, files: set[str]) -> bool:
    return path in files or any(name.startswith(path.rstrip("/") + "/") for name in files)


def changes_since_the_committed_run(status: dict, files: set[str]) -> list[str]:
    """What `dvc status --json` says changed in the commit itself (not missing outputs)."""
    found = []
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):  # "changed command", "always changed"
                found.append(f"{stage}: {entry}")
                continue
            for kind in ("changed deps", "changed outs"):
                for path, state in entry.get(kind, {}).items():
                    if isinstance(state, dict):  # params.yaml: {section: "modified"}
                        found += [f"{stage}: {path} {key} {how}" for key, how in state.items()]
                    elif tracked(path, files):
                        found.append(f"{stage}: {path} {state}")
    return found


def test_dvc_lock_is_the_committed_code_and_params() -> None:
    files = set(subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.split())
    status = json.loads(run(["dvc", "status", "--json"], cwd=REPO).stdout)
    assert changes_since_the_committed_run(status, files) == []


def test_changes_are_found() -> None:
    # the shapes `dvc status --json` gives (DVC 3.67): a changed command, params, code
    status = {"pretrain": [{"changed deps": {"data/vocab": "deleted",
                                             "params.yaml": {"pretrain": "modified"}}},
                           {"changed outs": {"models/lm.pt": "not in cache",
                                             "reports/pretrain.json": "modified"}},
                           "changed command"],
              "vocab": [{"changed deps": {"pipeline/stages/vocab.py": "modified",
                                          "data/tokens": "deleted"}}],
              "evaluate": [{"changed outs": {"reports/plots": "modified"}}]}
    files = {"pipeline/stages/vocab.py", "reports/pretrain.json", "reports/plots/roc.csv"}
    assert changes_since_the_committed_run(status, files) == [
        "pretrain: params.yaml pretrain modified", "pretrain: reports/pretrain.json modified",
        "pretrain: changed command", "vocab: pipeline/stages/vocab.py modified",
        "evaluate: reports/plots modified"]
