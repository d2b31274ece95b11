"""One error type for problems the user can fix, and the wrapper every stage runs under."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable


class PipelineError(Exception):
    """A problem with the inputs or settings, reported as one clear message (no traceback)."""


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's main(); report user errors and Ctrl-C plainly, and record the wall time."""
    from pipeline.timing import record_stage_time

    name = os.environ.get("DVC_STAGE") or name  # e.g. train_rnn_scratch, not just train
    started = time.perf_counter()
    try:
        main()
    except PipelineError as exc:
        print(f"\n[{name}] error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"\n[{name}] interrupted; outputs of this stage were not written", file=sys.stderr)
        sys.exit(130)
    seconds = time.perf_counter() - started
    record_stage_time(name, seconds)
    print(f"[{name}] done in {seconds:.1f} s{with_start_up(seconds)}")


def with_start_up(seconds: float) -> str:
    """`` (N s with start-up and imports)`` where the process's age is known."""
    from pipeline.timing import process_age_seconds

    age = process_age_seconds()
    return "" if age is None else f" ({max(age, seconds):.1f} s with start-up and imports)"
