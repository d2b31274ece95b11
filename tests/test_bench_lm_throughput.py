"""benchmarks/bench_lm_throughput.py: a smoke run at a small size prints its JSON line, and
measures a bf16 matmul peak only where bf16 is native (elsewhere PyTorch emulates it, and
the benchmark sat for minutes in one 2048^3 product)."""

from __future__ import annotations

import json
import sys

from pipeline.runtime import cpu_has_bf16
from tests.conftest import REPO, run


def test_quick_run_prints_figures_and_skips_emulated_bf16() -> None:
    result = run([sys.executable, "benchmarks/bench_lm_throughput.py", "--quick", "--threads", "1",
                  "--vocab", "2000", "--batch", "8", "--peak-size", "512"], cwd=REPO, timeout=600)
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["benchmark"] == "lm_throughput"
    assert line["config"]["vocab"] == 2000 and line["config"]["batch"] == 8
    assert line["peak_gflops"]["fp32"] > 0
    assert (line["peak_gflops"]["bf16"] is not None) == cpu_has_bf16()
    for side in ("project", "reference"):
        assert line[side]["tokens_per_s"] > 0 and line[side]["mfu"] > 0
    assert line["ratio"] > 0
