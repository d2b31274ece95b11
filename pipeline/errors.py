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
    whole = record_stage_time(name, seconds).get("process_seconds")
    start_up = "" if whole is None else f" ({whole:.1f} s with start-up and imports)"
    print(f"[{name}] done in {seconds:.1f} s{start_up}")
