"""Helpers shared by the benchmark scripts: timing, medians, machine description, JSON output.

Every script prints exactly one JSON line on stdout (its figures, the reference measured
in the same run, and their ratio); progress and human-readable notes go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.timing import usable_cores

REPO = Path(__file__).resolve().parent.parent  # the project root (benchmarks/..)


def log(message: str) -> None:
    """A progress line on stderr (stdout is kept for the one JSON result line)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_benchmark(benchmark: Callable[[Any], None], args: Any) -> int:
    """``benchmark(args)``; a problem with its inputs (``PipelineError``) is one line on
    stderr and exit status 1, as in the stages, instead of a traceback."""
    try:
        benchmark(args)
    except PipelineError as exc:
        log(f"error: {exc}")
        return 1
    return 0


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine(describe_torch: bool | None = None) -> dict[str, Any]:
    """Where the numbers come from: CPU, cores, load, library versions, GPU, date.

    ``describe_torch``: add torch's version, threads and GPU (None: when the script has
    imported torch; the scripts that do not use it are spared its start-up)."""
    flags = cpu_flags()
    info: dict[str, Any] = {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "isa": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    with contextlib.suppress(OSError):
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    if describe_torch is None:
        describe_torch = "torch" in sys.modules
    if describe_torch:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def busy_warning() -> str | None:
    """A warning when the 1-minute load average says other work shares the cores."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cores = usable_cores()
    if load > 0.5 * cores:
        return (f"load average {load:.1f} on {cores} cores: the machine is not idle, "
                "so these timings are not representative")
    return None


def emit(benchmark: str, result: dict[str, Any], describe_torch: bool | None = None) -> None:
    """Print the result as one JSON line on stdout, with the machine description."""
    warning = busy_warning()
    record = {"benchmark": benchmark, **result, "machine": machine(describe_torch)}
    if warning:
        record["warning"] = warning
        log(f"WARNING: {warning}")
    print(json.dumps(record, sort_keys=False, default=_plain), flush=True)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


def rounded(value: float, digits: int = 3) -> float:
    """Round to ``digits`` significant digits (for readable JSON)."""
    if value == 0 or value != value:  # zero or NaN
        return value
    return float(f"{value:.{digits}g}")


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an int in [minimum, maximum], else argparse's one-line usage error
    (0 reviews, batches or repeats used to fail deep inside with a traceback)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"{minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse
