"""Same code + params + data -> the same bytes, and DVC sees no spurious change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.config import EVALUATED
from tests.conftest import TinyRun, copy_project, run

pytestmark = pytest.mark.slow

# Wall-clock fields: the only values that legitimately differ between two runs.
TIMING_KEYS = {"train_seconds", "inference_seconds", "total_train_seconds"}
# The comparison tables' last two columns are training seconds (rounded, so they usually
# agree, but not when one run is slowed down): compared below without those columns.
TIMED_TABLES = {"reports/comparison.md", "reports/ensemble.md"}
NONDETERMINISTIC_OUTS = {"reports/metrics.json", "reports/pretrain.json", *TIMED_TABLES,
                         "reports/curves/pretrain.csv", "reports/accuracy_vs_train_time.png",
                         *[f"reports/train/{v}.json" for v in EVALUATED],
                         *[f"reports/curves/{v}.csv" for v in EVALUATED]}


def lock_hashes(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    hashes = {}
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            hashes[out["path"]] = out["md5"]
    return hashes


def without_timings(value: object) -> object:
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items()
                if k not in TIMING_KEYS and k not in {"elapsed_seconds", "tokens_per_second",
                                                      "mlflow_run_id"}}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def without_time_columns(table: str) -> list[str]:
    """A comparison report's lines, the results table's rows cut before their two time columns."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if "train time (s)" in line)
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [line.rsplit("|", 3)[0] if start <= i < end else line for i, line in enumerate(lines)]


def test_two_runs_give_identical_outputs(tmp_path: Path, tiny_run: TinyRun) -> None:
    """The session's tiny run, and a copy of it rerun from scratch (`--force`)."""
    first = tiny_run.root
    first_hashes = lock_hashes(first)
    first_metrics = json.loads((first / "reports/metrics.json").read_text())
    first_train = json.loads((first / "reports/train/rnn_pretrained.json").read_text())

    root = copy_project(first, tmp_path / "repo")
    run(["dvc", "repro", "--force"], cwd=root)
    second_hashes = lock_hashes(root)
    assert set(second_hashes) == set(first_hashes)
    for path, digest in first_hashes.items():
        if path not in NONDETERMINISTIC_OUTS:
            assert second_hashes[path] == digest, f"{path} changed between identical runs"
    # models and data: byte-identical (listed above through their DVC hashes)
    assert {"models/lm.pt", "models/rnn_pretrained.pt", "data/vocab"} <= set(first_hashes)
    second_metrics = json.loads((root / "reports/metrics.json").read_text())
    assert without_timings(second_metrics) == without_timings(first_metrics)
    second_train = json.loads((root / "reports/train/rnn_pretrained.json").read_text())
    assert without_timings(second_train) == without_timings(first_train)
    for table in TIMED_TABLES & set(first_hashes):
        assert without_time_columns((root / table).read_text()) == \
            without_time_columns((first / table).read_text()), table
    status = run(["dvc", "status"], cwd=root)
    assert "up to date" in status.stdout
