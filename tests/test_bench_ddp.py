"""benchmarks/bench_ddp.py: a smoke run trains with one process and with torchrun, and
prints both sides' figures and the ratios."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run, tiny_params
from tests.test_resume import prepare_inputs

pytestmark = pytest.mark.slow


def test_quick_run_prints_both_sides(tmp_path: Path, tiny_archive: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    prepare_inputs(tmp_path, tiny_params(tiny_archive), env)
    result = run([sys.executable, str(REPO / "benchmarks/bench_ddp.py"), "--quick",
                  "--params", "params.yaml", "--data", "data/vocab"], cwd=tmp_path, timeout=600)
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["benchmark"] == "ddp" and line["config"]["processes"] == 2
    for side in ("single_process", "torchrun"):
        assert line[side]["lm_tokens_per_s"] > 0 and line[side]["classifier_train_s"] > 0
    assert line["lm_speedup"] > 0 and line["classifier_speedup"] > 0
    assert "DistributedDataParallel" not in result.stdout  # stage logs stay in their files


def test_missing_data_is_one_clear_line(tmp_path: Path) -> None:
    result = run([sys.executable, str(REPO / "benchmarks/bench_ddp.py"), "--quick",
                  "--data", str(tmp_path)], cwd=tmp_path, check=False, timeout=120)
    assert result.returncode == 1 and not result.stdout
    assert f"{tmp_path}: no train_ids.npy" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("argument", [["--steps", "0"], ["--processes", "1"]])
def test_a_count_out_of_range_is_a_usage_error(tmp_path: Path, argument: list[str]) -> None:
    result = run([sys.executable, str(REPO / "benchmarks/bench_ddp.py"), *argument],
                 cwd=tmp_path, check=False, timeout=120)
    assert result.returncode == 2 and f"argument {argument[0]}: must be at least" in result.stderr
