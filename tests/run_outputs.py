"""What two runs of the same code, params and data may differ in, and how their outputs are
compared: tests/test_reproducibility.py and docs/experiments/relock_committed_run.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

# Fields ending so are wall-clock times, rates, memory peaks and MLflow ids: the only values
# that legitimately differ between two runs.
WALL_CLOCK_SUFFIXES = ("seconds", "per_second", "mlflow_run_id", "peak_rss_mb")
# The comparison tables' last two columns are training seconds (rounded, so they usually
# agree, but not when one run is slowed down): compared without those columns.
TIMED_TABLES = {"reports/comparison.md", "reports/ensemble.md"}
WALL_CLOCK_PLOTS = {"reports/accuracy_vs_train_time.png"}  # training time is its x axis


def is_wall_clock(key: str) -> bool:
    return key.endswith(WALL_CLOCK_SUFFIXES)


def without_wall_clock(value: object) -> object:
    if isinstance(value, dict):
        return {k: without_wall_clock(v) for k, v in value.items() if not is_wall_clock(k)}
    if isinstance(value, list):
        return [without_wall_clock(v) for v in value]
    return value


def without_time_columns(table: str) -> list[str]:
    """A comparison report's lines, the results table's rows cut before their two time columns."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if "train time (s)" in line)
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [line.rsplit("|", 3)[0] if start <= i < end else line for i, line in enumerate(lines)]


def lock_hashes(root: Path) -> dict[str, str]:
    """Every DVC output's path in ``root``'s dvc.lock, with its recorded md5."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values()
            for out in stage.get("outs", [])}


def same_output(name: str, first: Path, second: Path) -> bool:
    """Whether the file ``name`` (relative to its project) of one run, at ``first``, matches
    its twin at ``second``, wall-clock values aside."""
    if first.read_bytes() == second.read_bytes() or name in WALL_CLOCK_PLOTS:
        return True
    if name in TIMED_TABLES:
        return without_time_columns(first.read_text()) == without_time_columns(second.read_text())
    if first.suffix == ".json":
        return without_wall_clock(json.loads(first.read_text())) == without_wall_clock(
            json.loads(second.read_text()))
    if first.suffix == ".csv":
        left, right = pd.read_csv(first), pd.read_csv(second)
        kept = [column for column in left.columns if not is_wall_clock(column)]
        return list(left.columns) == list(right.columns) and left[kept].equals(right[kept])
    return False
