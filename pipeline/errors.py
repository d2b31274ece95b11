"""One error type for problems the user can fix, and the wrapper every stage runs under."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from collections.abc import Callable


class PipelineError(Exception):
    """A problem with the inputs or settings, reported as one clear message (no traceback)."""


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: the SIGINT handler in force (training's stops at the next step
    boundary and saves a checkpoint), or KeyboardInterrupt (also where SIGINT is ignored,
    as in a shell's background job)."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def _default_sigterm() -> None:
    # forked children (the tokenizer's pool workers) must die on SIGTERM at once, as the
    # pool's terminate() expects: a Python-level handler there can wait for ever on a lock
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's main(); report user errors and Ctrl-C plainly, and record the wall time."""
    from pipeline.timing import record_stage_time

    name = os.environ.get("DVC_STAGE") or name  # e.g. train_rnn_scratch, not just train
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so that atomic outputs remove
    # their temporaries instead of leaving them next to the outputs
    signal.signal(signal.SIGTERM, _terminate)
    os.register_at_fork(after_in_child=_default_sigterm)
    started = time.perf_counter()
    try:
        main()
    except PipelineError as exc:
        print(f"\n[{name}] error: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:  # disk full, permissions, a folder where a file should be, ...
        where = f": {exc.filename}" if exc.filename else ""
        print(f"\n[{name}] error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        # each output is written whole or not at all, but a stage with several may have
        # written some: DVC records none of them for a failed stage and reruns it
        print(f"\n[{name}] interrupted; run the same command again (dvc repro, dvc exp run "
              "or a study): a training stage resumes from its checkpoint", file=sys.stderr)
        sys.exit(130)
    seconds = time.perf_counter() - started
    whole = record_stage_time(name, seconds).get("process_seconds")
    start_up = "" if whole is None else f" ({whole:.1f} s with start-up and imports)"
    print(f"[{name}] done in {seconds:.1f} s{start_up}")
    # every output is closed and recorded: spare the process the garbage collections
    # Python runs over every object while it shuts down (1-3 s with torch, MLflow and
    # pandas loaded, per stage). Frozen objects are still freed, only not cycle-collected.
    gc.freeze()
