"""The regression gate run as CI runs it (`python -m pipeline.gate`) on metrics files in tmp."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run

FULL_DATA = {"name": "imdb", "train": 22500, "valid": 2500, "test": 25000, "unlabeled": 50000}
QUICK_DATA = {"name": "imdb", "train": 1800, "valid": 200, "test": 1000, "unlabeled": 2000}
GATE = {
    "min_test_accuracy": {"bag_of_embeddings": 0.85, "rnn_scratch": 0.80, "rnn_pretrained": 0.80},
    "max_drop_vs_accepted": 0.01,
    "min_pretrained_gain": None,
    "quick_min_test_accuracy": {"bag_of_embeddings": 0.65, "rnn_scratch": 0.5,
                                "rnn_pretrained": 0.55},
    "drop_metrics": ["accuracy"],
}
GOOD = {"rnn_pretrained": 0.89, "rnn_scratch": 0.86, "bag_of_embeddings": 0.87}
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": "/dev/null"}


def metrics(accuracy: dict[str, float], data: dict | None = None) -> dict:
    """A reports/metrics.json in the evaluate stage's schema."""
    classifiers = {
        variant: {"test": {"accuracy": acc, "macro_f1": acc - 0.001, "roc_auc": 0.95,
                           "accuracy_ci95": [acc - 0.004, acc + 0.004]},
                  "train_seconds": 10.0, "valid_accuracy": acc}
        for variant, acc in accuracy.items()}
    return {"lm": {"valid_perplexity": 80.0, "epochs": 3, "tokens": 1000},
            "classifiers": classifiers, "dataset": dict(data or FULL_DATA)}


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory laid out like the repository: params.yaml (with GATE) and reports/."""
    write_params(tmp_path)
    (tmp_path / "reports").mkdir()
    return tmp_path


def write_params(root: Path, gate: dict | None = None, **prepare: int) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["gate"] = copy.deepcopy(gate or GATE)
    params["prepare"].update(prepare)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def gate(cwd: Path, *args: str):
    return run([sys.executable, "-m", "pipeline.gate", *args], cwd=cwd,
               env={"PYTHONPATH": str(REPO)}, check=False)


def row(output: str, variant: str, metric: str) -> list[str]:
    """The cells (variant, metric, value, accepted, limit, status) of one table row."""
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[:2] == [variant, metric]:
            assert len(cells) == 6, line
            return cells
    raise AssertionError(f"no row for {variant} / {metric} in:\n{output}")


def test_passing_results_exit_zero(project: Path) -> None:
    write_json(project / "reports/metrics.json", metrics(GOOD))
    accepted = write_json(project / "accepted.json", metrics(GOOD))
    result = gate(project, "--accepted", str(accepted))
    assert result.returncode == 0, result.stdout + result.stderr
    assert row(result.stdout, "bag_of_embeddings", "accuracy")[2:] == [
        "0.8700", "—", ">= 0.8500", "PASS"]
    assert row(result.stdout, "rnn_pretrained", "accuracy vs accepted")[2:] == [
        "0.8900", "0.8900", ">= 0.8800", "PASS"]
    # three floors and three drop checks, all passing
    statuses = [line.rsplit(maxsplit=1)[-1] for line in result.stdout.splitlines()
                if line.startswith(("rnn_", "bag_"))]
    assert statuses == ["PASS"] * 6
    assert "Result: PASS (all 6 checks passed)" in result.stdout


def test_accuracy_below_floor_fails(project: Path) -> None:
    current = {**GOOD, "rnn_scratch": 0.79}
    write_json(project / "reports/metrics.json", metrics(current))
    accepted = write_json(project / "accepted.json", metrics(current))
    result = gate(project, "--accepted", str(accepted))
    assert result.returncode == 1
    assert row(result.stdout, "rnn_scratch", "accuracy")[2:] == [
        "0.7900", "—", ">= 0.8000", "FAIL"]
    assert row(result.stdout, "bag_of_embeddings", "accuracy")[-1] == "PASS"
    assert "Result: FAIL (1 of 6 checks failed)" in result.stdout


def test_drop_versus_accepted_fails_beyond_limit(project: Path) -> None:
    accepted = write_json(project / "accepted.json", metrics(GOOD))
    # bag_of_embeddings loses 1.5 points (limit 1), rnn_pretrained exactly 1 point (allowed)
    current = {**GOOD, "bag_of_embeddings": 0.855, "rnn_pretrained": 0.88}
    write_json(project / "reports/metrics.json", metrics(current))
    result = gate(project, "--accepted", str(accepted))
    assert result.returncode == 1, result.stdout
    metric = "accuracy vs accepted"
    assert row(result.stdout, "bag_of_embeddings", metric)[2:] == [
        "0.8550", "0.8700", ">= 0.8600", "FAIL"]
    assert row(result.stdout, "rnn_pretrained", metric)[2:] == [
        "0.8800", "0.8900", ">= 0.8800", "PASS"]
    assert row(result.stdout, "rnn_scratch", metric)[-1] == "PASS"
    # the floor of 0.85 still passes: only the comparison catches this regression
    assert row(result.stdout, "bag_of_embeddings", "accuracy")[-1] == "PASS"
    assert "Result: FAIL (1 of 6 checks failed)" in result.stdout


def test_other_drop_metrics_are_checked(project: Path) -> None:
    write_params(project, {**GATE, "drop_metrics": ["accuracy", "roc_auc"]})
    accepted = write_json(project / "accepted.json", metrics(GOOD))
    current = metrics(GOOD)
    current["classifiers"]["rnn_scratch"]["test"]["roc_auc"] = 0.90  # accepted 0.95
    write_json(project / "reports/metrics.json", current)
    result = gate(project, "--accepted", str(accepted))
    assert result.returncode == 1
    assert row(result.stdout, "rnn_scratch", "roc_auc vs accepted")[2:] == [
        "0.9000", "0.9500", ">= 0.9400", "FAIL"]
    assert row(result.stdout, "rnn_pretrained", "roc_auc vs accepted")[-1] == "PASS"
    assert row(result.stdout, "rnn_pretrained", "accuracy vs accepted")[-1] == "PASS"


def test_min_pretrained_gain(project: Path) -> None:
    write_params(project, {**GATE, "min_pretrained_gain": 0.015})
    write_json(project / "reports/metrics.json", metrics(GOOD))  # gain +0.02
    assert gate(project, "--no-accepted").returncode == 0
    write_json(project / "reports/metrics.json",
               metrics({**GOOD, "rnn_pretrained": 0.88}))  # gain +0.01 < 0.015
    result = gate(project, "--no-accepted")
    assert result.returncode == 1
    cells = row(result.stdout, "rnn_pretrained", "accuracy gain vs bag_of_embeddings")
    assert cells[2:] == ["+0.0100", "—", ">= +0.0150", "FAIL"]


def test_nan_metric_fails(project: Path) -> None:
    current = metrics(GOOD)
    current["classifiers"]["rnn_scratch"]["test"]["accuracy"] = float("nan")
    write_json(project / "reports/metrics.json", current)  # json writes NaN, as evaluate does
    result = gate(project, "--no-accepted")
    assert result.returncode == 1
    assert row(result.stdout, "rnn_scratch", "accuracy")[2:] == ["nan", "—", ">= 0.8000", "FAIL"]


def test_metric_undefined_in_both_runs_is_skipped(project: Path) -> None:
    # ROC-AUC is NaN when the test set lacks a class: an unchanged run must not fail for ever
    write_params(project, {**GATE, "drop_metrics": ["accuracy", "roc_auc"]})
    accepted, current = metrics(GOOD), metrics(GOOD)
    for data in (accepted, current):
        data["classifiers"]["rnn_scratch"]["test"]["roc_auc"] = float("nan")
    write_json(project / "accepted.json", accepted)
    write_json(project / "reports/metrics.json", current)
    result = gate(project, "--accepted", "accepted.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert row(result.stdout, "rnn_scratch", "roc_auc vs accepted")[2:] == [
        "nan", "nan", "—", "SKIP"]
    assert "rnn_scratch roc_auc vs accepted: not defined in either run" in result.stdout
    assert row(result.stdout, "rnn_pretrained", "roc_auc vs accepted")[-1] == "PASS"
    # NaN now against a number before is still a regression
    current["classifiers"]["rnn_pretrained"]["test"]["roc_auc"] = float("nan")
    write_json(project / "reports/metrics.json", current)
    result = gate(project, "--accepted", "accepted.json")
    assert result.returncode == 1
    assert row(result.stdout, "rnn_pretrained", "roc_auc vs accepted")[2:] == [
        "nan", "0.9500", ">= 0.9400", "FAIL"]


@pytest.mark.parametrize(("variant", "name", "value", "shown"), [
    ("bag_of_embeddings", "accuracy", float("inf"), "inf"),
    ("bag_of_embeddings", "accuracy", 87.0, "87.0"),  # a percentage, not a fraction
    ("rnn_scratch", "accuracy", -5, "-5.0"),
    ("rnn_pretrained", "macro_f1", 1.2, "1.2"),
])
def test_metric_outside_zero_one_is_malformed(project: Path, variant: str, name: str,
                                              value: float, shown: str) -> None:
    write_params(project, {**GATE, "drop_metrics": ["accuracy", "macro_f1"]})
    accepted = write_json(project / "accepted.json", metrics(GOOD))
    current = metrics(GOOD)
    current["classifiers"][variant]["test"][name] = value
    write_json(project / "reports/metrics.json", current)  # json writes inf as Infinity
    result = gate(project, "--accepted", str(accepted))
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip() == (
        f"[gate] error: reports/metrics.json: classifiers.{variant}.test.{name} must be a "
        f"fraction between 0 and 1, got {shown}")


def test_accepted_metric_outside_zero_one_is_malformed(project: Path) -> None:
    write_json(project / "reports/metrics.json", metrics(GOOD))
    write_json(project / "accepted.json", metrics({**GOOD, "rnn_scratch": 86.0}))
    result = gate(project, "--accepted", "accepted.json")
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip() == (
        "[gate] error: accepted.json: classifiers.rnn_scratch.test.accuracy must be a "
        "fraction between 0 and 1, got 86.0")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda m: m["classifiers"]["rnn_scratch"]["test"].pop("accuracy"),
     "reports/metrics.json: classifiers.rnn_scratch.test.accuracy is missing"),
    (lambda m: m["classifiers"].pop("rnn_pretrained"),
     "reports/metrics.json: variant 'rnn_pretrained' is missing (present: bag_of_embeddings, "
     "rnn_scratch)"),
    (lambda m: m["classifiers"]["bag_of_embeddings"]["test"].update(accuracy="high"),
     "reports/metrics.json: classifiers.bag_of_embeddings.test.accuracy must be a number, "
     "got 'high'"),
    (lambda m: m.pop("classifiers"),
     "reports/metrics.json: expected an object with a 'classifiers' mapping (the schema written "
     "by the evaluate stage)"),
    # present but of the wrong type: not called missing
    (lambda m: m["classifiers"].update(rnn_scratch=[0.86]),
     "reports/metrics.json: classifiers.rnn_scratch is not an object (got an array)"),
    (lambda m: m["classifiers"]["rnn_scratch"].update(test=[0.86]),
     "reports/metrics.json: classifiers.rnn_scratch.test is not an object (got an array)"),
])
def test_missing_or_bad_metric_is_one_clear_error(project: Path, mutate, message: str) -> None:
    current = metrics(GOOD)
    mutate(current)
    write_json(project / "reports/metrics.json", current)
    result = gate(project, "--no-accepted")
    assert result.returncode == 2
    assert result.stderr.strip() == f"[gate] error: {message}"
    assert "Traceback" not in result.stderr


def test_missing_metrics_file(project: Path) -> None:
    result = gate(project, "--no-accepted")
    assert result.returncode == 2
    assert result.stderr.strip() == "[gate] error: metrics file not found: reports/metrics.json"


def test_missing_accepted_file(project: Path) -> None:
    write_json(project / "reports/metrics.json", metrics(GOOD))
    result = gate(project, "--accepted", "nope.json")
    assert result.returncode == 2
    assert "accepted metrics file not found: nope.json" in result.stderr


def test_malformed_json(project: Path) -> None:
    (project / "reports/metrics.json").write_text('{"classifiers": {"rnn_scratch": ')
    result = gate(project, "--no-accepted")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "[gate] error: reports/metrics.json is not valid JSON: Expecting value")


def test_invalid_gate_params(project: Path) -> None:
    write_params(project, {**GATE, "min_test_accuracy": {"rnn_scratch": 80}})
    write_json(project / "reports/metrics.json", metrics(GOOD))
    result = gate(project, "--no-accepted")
    assert result.returncode == 2
    assert "min_test_accuracy.rnn_scratch must be between 0 and 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_floor_for_a_variant_not_in_results(project: Path) -> None:
    write_params(project, {**GATE, "min_test_accuracy": {"transformer": 0.9}})
    write_json(project / "reports/metrics.json", metrics(GOOD))
    result = gate(project, "--no-accepted")
    assert result.returncode == 2
    assert "variant 'transformer' is missing" in result.stderr


def test_quick_run_uses_quick_floors_and_skips_comparison(project: Path) -> None:
    write_params(project, max_train=2000, max_test=1000)
    weak = {"rnn_pretrained": 0.6, "rnn_scratch": 0.52, "bag_of_embeddings": 0.7}
    write_json(project / "reports/metrics.json", metrics(weak, QUICK_DATA))
    accepted = write_json(project / "accepted.json", metrics(GOOD))
    result = gate(project, "--accepted", str(accepted))
    assert result.returncode == 0, result.stdout
    assert "(quick run)" in result.stdout
    assert row(result.stdout, "rnn_scratch", "accuracy")[2:] == [
        "0.5200", "—", ">= 0.5000", "PASS"]
    assert row(result.stdout, "(all)", "vs accepted (max drop 0.0100)")[-1] == "SKIP"
    assert "capped run: its data differ" in result.stdout
    # a broken quick run still fails
    write_json(project / "reports/metrics.json",
               metrics({**weak, "bag_of_embeddings": 0.5}, QUICK_DATA))
    assert gate(project, "--accepted", str(accepted)).returncode == 1


def test_full_run_on_other_data_than_accepted_fails(project: Path) -> None:
    write_json(project / "reports/metrics.json", metrics(GOOD))
    accepted = write_json(project / "accepted.json", metrics(GOOD, {**FULL_DATA, "test": 20000}))
    result = gate(project, "--accepted", str(accepted))
    assert result.returncode == 1
    cells = row(result.stdout, "(all)", "dataset")
    assert cells[-1] == "FAIL"
    assert "test 25000" in cells[2] and "test 20000" in cells[3]


def test_markdown_is_appended(project: Path) -> None:
    summary = project / "summary.md"
    summary.write_text("# earlier step\n")
    write_json(project / "reports/metrics.json", metrics({**GOOD, "rnn_scratch": 0.7}))
    result = gate(project, "--no-accepted", "--markdown", str(summary))
    assert result.returncode == 1
    text = summary.read_text()
    assert text.startswith("# earlier step\n## Regression gates: FAIL")
    assert "| variant | metric | value | accepted | limit | status |" in text
    assert "| rnn_scratch | accuracy | 0.7000 | — | ≥ 0.8000 | **FAIL** |" in text
    (project / "reports/metrics.json").unlink()
    assert gate(project, "--no-accepted", "--markdown", str(summary)).returncode == 2
    assert "## Regression gates: ERROR" in summary.read_text()


def git(cwd: Path, *args: str) -> str:
    return run(["git", *args], cwd=cwd, env=GIT_ENV).stdout.strip()


def test_accepted_rev_reads_committed_metrics(project: Path) -> None:
    git(project, "init", "-q", "-b", "main")
    git(project, "commit", "-q", "--allow-empty", "-m", "no results yet")
    write_json(project / "reports/metrics.json", metrics(GOOD))

    # nothing accepted yet at main: the comparison is skipped, the floors still apply
    result = gate(project, "--accepted-rev", "main")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no accepted results at main:reports/metrics.json" in result.stdout

    git(project, "add", "reports/metrics.json", "params.yaml")
    git(project, "commit", "-q", "-m", "accept results")
    git(project, "checkout", "-q", "-b", "feature")
    write_json(project / "reports/metrics.json", metrics({**GOOD, "rnn_pretrained": 0.87}))
    result = gate(project)  # --accepted-rev main is the default
    assert result.returncode == 1
    assert "vs accepted main:reports/metrics.json" in result.stdout
    assert row(result.stdout, "rnn_pretrained", "accuracy")[-1] == "PASS"  # floor
    assert row(result.stdout, "rnn_pretrained", "accuracy vs accepted")[2:] == [
        "0.8700", "0.8900", ">= 0.8800", "FAIL"]

    # the comparison follows the revision: once committed, HEAD holds the new results
    git(project, "commit", "-q", "-am", "new results")
    assert gate(project, "--accepted-rev", "HEAD").returncode == 0
    # run from a subdirectory with a relative --metrics path: same file in git
    result = gate(project / "reports", "--metrics", "metrics.json", "--params",
                  "../params.yaml", "--accepted-rev", "main")
    assert result.returncode == 1 and "main:reports/metrics.json" in result.stdout


def test_accepted_rev_errors(project: Path) -> None:
    write_json(project / "reports/metrics.json", metrics(GOOD))
    result = gate(project, "--accepted-rev", "main")
    assert result.returncode == 2
    assert "is not in one: pass --accepted PATH or --no-accepted" in result.stderr

    git(project, "init", "-q", "-b", "main")
    git(project, "commit", "-q", "--allow-empty", "-m", "init")
    result = gate(project, "--accepted-rev", "origin/main")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"[gate] error: git revision 'origin/main' not found in {project.resolve()} "
        "(a shallow CI checkout must fetch it first, e.g. git fetch origin main)")

    (project / "reports/metrics.json").write_text("not json")
    git(project, "add", "reports/metrics.json")
    git(project, "commit", "-q", "-m", "broken")
    write_json(project / "reports/metrics.json", metrics(GOOD))
    result = gate(project)
    assert result.returncode == 2
    assert "main:reports/metrics.json is not valid JSON" in result.stderr
