"""reports/timings.json: each stage's own time and its whole process's time (start-up and
imports included), and the summary line with both sums."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

from pipeline.timing import (
    process_age_seconds,
    read_timings,
    record_stage_time,
    summary,
    usable_cores,
)
from tests.conftest import run

LINUX_PROC = Path("/proc/self/stat").exists()


@pytest.mark.skipif(not LINUX_PROC, reason="the process's age is read from /proc")
def test_process_age_counts_from_the_process_start() -> None:
    first = process_age_seconds()
    assert first is not None and first > 0
    time.sleep(0.1)
    second = process_age_seconds()
    assert second is not None and second >= first + 0.05


def test_usable_cores_is_the_affinity_or_the_machines_count_without_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {2, 3, 7})
    assert usable_cores() == 3
    monkeypatch.delattr("os.sched_getaffinity")  # macOS has none
    assert usable_cores() == 64


def test_record_keeps_both_times_and_never_less_than_the_stage(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "timings.json"
    record_stage_time("slow_start", 2.0, path, process_seconds=9.5)
    record_stage_time("coarse_clock", 2.0, path, process_seconds=1.99)
    timings = read_timings(path)
    assert timings["slow_start"]["seconds"] == 2.0
    assert timings["slow_start"]["process_seconds"] == 9.5
    assert timings["coarse_clock"]["process_seconds"] == 2.0  # clamped to the stage's time
    assert timings["slow_start"]["peak_rss_mb"] > 0


def test_summary_sums_own_and_whole_process_times() -> None:
    line = summary({"a": {"seconds": 1.0, "process_seconds": 3.0, "peak_rss_mb": 10},
                    "b": {"seconds": 2.0, "peak_rss_mb": 20}})  # an entry of the older format
    assert "a 1.0 / 3.0 / 10" in line and "b 2.0 / 2.0 / 20" in line
    assert line.endswith("total 3.0 s, 5.0 s with start-up")


@pytest.mark.skipif(not LINUX_PROC, reason="the process's age is read from /proc")
def test_a_stage_records_its_start_up(tmp_path: Path, pipeline_env: dict) -> None:
    """A real stage process: its imports happen before main() starts, so they show only in
    process_seconds."""
    code = ("import time, torch\n"  # an import that takes a while, as every stage has
            "from pipeline.errors import run_stage\n"
            "run_stage('demo', lambda: time.sleep(0.3))\n")
    result = run([sys.executable, "-c", code], cwd=tmp_path, env=pipeline_env)
    match = re.search(r"\[demo\] done in ([\d.]+) s \(([\d.]+) s with start-up and imports\)",
                      result.stdout)
    assert match, result.stdout
    own, whole = float(match[1]), float(match[2])
    assert own >= 0.3 and whole > own
    entry = json.loads((tmp_path / "reports" / "timings.json").read_text())["demo"]
    assert entry["seconds"] >= 0.3
    assert entry["process_seconds"] > entry["seconds"]
