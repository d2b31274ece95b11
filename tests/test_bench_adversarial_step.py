"""benchmarks/bench_adversarial_step.py: it runs, and the project's step (the clean half
back-propagated with the probe) and the reference's (the mean back-propagated once) get the
same gradients. Tiny inputs only: no timing is checked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import REPO, run


def test_quick_run_reports_both_steps_with_the_same_gradients() -> None:
    result = run([sys.executable, "benchmarks/bench_adversarial_step.py", "--quick",
                  "--threads", "1"], cwd=REPO, timeout=300)
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["benchmark"] == "adversarial_step"
    for variant in ("project", "reference", "plain"):
        assert record[variant]["seconds_per_step"] > 0
    # bf16 autocast rounds differently along the two paths; a missing or doubled half of
    # the gradient would be off by ~50%
    assert record["max_grad_diff"] < 0.02


def test_data_without_a_train_split_is_one_line(tmp_path: Path) -> None:
    """An explicit --data must hold a train split: no silent fall-back to synthetic reviews."""
    result = run([sys.executable, "benchmarks/bench_adversarial_step.py", "--data",
                  str(tmp_path), "--threads", "1"], cwd=REPO, check=False, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"[bench] error: {tmp_path} has no train_ids.npy: give a vocab stage's output folder "
        "(data/vocab), or --synthetic")
    assert not result.stdout.strip()
