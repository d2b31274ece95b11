"""Same code + params + data -> the same bytes, and DVC sees no spurious change."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import EVALUATED
from tests.conftest import TinyRun, copy_project, run
from tests.run_outputs import TIMED_TABLES, WALL_CLOCK_PLOTS, lock_hashes, same_output

pytestmark = pytest.mark.slow

# outputs whose DVC hash may differ between identical runs: they hold wall-clock values
NONDETERMINISTIC_OUTS = {"reports/metrics.json", "reports/pretrain.json", *TIMED_TABLES,
                         "reports/curves/pretrain.csv", *WALL_CLOCK_PLOTS,
                         *[f"reports/train/{v}.json" for v in EVALUATED],
                         *[f"reports/curves/{v}.csv" for v in EVALUATED]}


def test_two_runs_give_identical_outputs(tmp_path: Path, tiny_run: TinyRun) -> None:
    """The session's tiny run, and a copy of it rerun from scratch (`--force`)."""
    first = tiny_run.root
    first_hashes = lock_hashes(first)

    root = copy_project(first, tmp_path / "repo")
    run(["dvc", "repro", "--force"], cwd=root)
    second_hashes = lock_hashes(root)
    assert set(second_hashes) == set(first_hashes)
    for path, digest in first_hashes.items():
        if path not in NONDETERMINISTIC_OUTS:
            assert second_hashes[path] == digest, f"{path} changed between identical runs"
    # models and data: byte-identical (listed above through their DVC hashes)
    assert {"models/lm.pt", "models/rnn_pretrained.pt", "data/vocab"} <= set(first_hashes)
    # the rest: the same but for wall-clock values (metrics, curves, comparison tables)
    timed = NONDETERMINISTIC_OUTS & set(first_hashes)
    assert {"reports/metrics.json", "reports/comparison.md"} <= timed
    for path in timed:
        assert same_output(path, first / path, root / path), f"{path} differs beyond timings"
    status = run(["dvc", "status"], cwd=root)
    assert "up to date" in status.stdout
