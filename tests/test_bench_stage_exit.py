"""benchmarks/bench_stage_exit.py: a smoke run prints both sides' exit times and the ratio."""

from __future__ import annotations

import json
import sys

from tests.conftest import REPO, run


def test_quick_run_prints_both_sides() -> None:
    result = run([sys.executable, "benchmarks/bench_stage_exit.py", "--quick", "--stage", "vocab"],
                 cwd=REPO, timeout=300)
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["benchmark"] == "stage_exit" and line["config"]["stage"] == "vocab"
    for side in ("A", "B"):
        assert 0 < line[side]["exit_seconds"] < line[side]["wall_seconds"]
    assert line["exit_speedup"] > 0
