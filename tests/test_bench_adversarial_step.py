"""benchmarks/bench_adversarial_step.py: it runs, and the project's step (the clean half
back-propagated with the probe) and the reference's (the mean back-propagated once) get the
same gradients. Tiny inputs only: no timing is checked."""

from __future__ import annotations

import json
import sys

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
