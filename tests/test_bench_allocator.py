"""benchmarks/bench_allocator.py: both arms run in their own processes and the allocator
setting takes effect in the project's arm only. Tiny inputs only: no timing is checked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import REPO, run


def test_quick_run_reports_both_arms_of_both_workloads() -> None:
    result = run([sys.executable, "benchmarks/bench_allocator.py", "--quick", "--threads", "1"],
                 cwd=REPO, timeout=300)
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["benchmark"] == "allocator"
    for workload in ("classifier", "lm"):
        for arm in ("project", "reference"):
            assert record[workload][arm]["seconds_per_step"] > 0
            assert record[workload][arm]["peak_rss_mb"] > 0
        assert record[workload]["speedup"] > 0
    # glibc's defaults hand freed memory back to the kernel (big blocks unmapped, the heap's
    # top trimmed), even the quick run's: the project's arm must fault far less
    assert record["classifier"]["project"]["minor_faults"] < \
        record["classifier"]["reference"]["minor_faults"] / 2


def test_data_without_a_train_split_is_one_line(tmp_path: Path) -> None:
    result = run([sys.executable, "benchmarks/bench_allocator.py", "--data", str(tmp_path)],
                 cwd=REPO, check=False, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"[bench] error: {tmp_path} has no train_ids.npy: give a vocab stage's output folder "
        "(data/vocab)")
    assert not result.stdout.strip()
