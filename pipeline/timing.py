"""Per-stage wall time and peak memory in reports/timings.json (not a DVC output: they vary
run to run). Each entry: ``{"seconds": ..., "process_seconds": ..., "peak_rss_mb": ...}``:
``seconds`` is the stage's own work (its ``main()``), ``process_seconds`` the whole process
from its start, interpreter start-up and imports included (Linux; what a stage costs in a
``dvc repro``); the peak covers the stage's own process and its largest child (e.g. a
tokenizer worker). Also the cores a process may use, which the stages size their threads and
workers by."""

from __future__ import annotations

import fcntl
import json
import os
import resource
from pathlib import Path

TIMINGS = Path("reports/timings.json")


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (a container's cpuset, ``taskset``),
    which can be fewer than the machine has (``os.cpu_count()``); the machine's count where
    the platform has no affinity (macOS)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def peak_rss_mb() -> float:
    """Largest resident set size so far of this process or any child it waited for (MB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024  # ru_maxrss is in KiB on Linux


def process_age_seconds() -> float | None:
    """Seconds since this process started (from /proc; None where there is none)."""
    try:
        # fields after the command name (which may hold spaces) start at field 3 of stat;
        # field 22 is the start time in clock ticks after boot
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    age = uptime - started
    return age if age >= 0 else None


def record_stage_time(stage: str, seconds: float, path: Path = TIMINGS,
                      process_seconds: float | None = None) -> dict[str, float]:
    """Record one stage's timings and return its entry; ``process_seconds`` defaults to this
    process's age."""
    if process_seconds is None:
        process_seconds = process_age_seconds()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several DVC queue workers may finish at once
        timings = read_timings(path)
        timings[stage] = {"seconds": round(seconds, 2),
                          "peak_rss_mb": round(peak_rss_mb())}
        if process_seconds is not None:
            # never below the stage's own time (/proc's clock ticks are 10 ms)
            timings[stage]["process_seconds"] = round(max(process_seconds, seconds), 2)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return timings[stage]


def read_timings(path: Path = TIMINGS) -> dict[str, dict[str, float]]:
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    # entries of an older format (seconds only) are read as such
    return {stage: entry if isinstance(entry, dict) else {"seconds": entry}
            for stage, entry in raw.items()}


def summary(timings: dict[str, dict[str, float]]) -> str:
    """One line: each stage's own time, its process's time and peak memory, and the sums."""
    def process(entry: dict[str, float]) -> float:
        return entry.get("process_seconds", entry["seconds"])

    stages = ", ".join(
        f"{stage} {entry['seconds']:.1f} / {process(entry):.1f} / "
        f"{entry.get('peak_rss_mb', float('nan')):.0f}"
        for stage, entry in timings.items())
    own = sum(entry["seconds"] for entry in timings.values())
    whole = sum(process(entry) for entry in timings.values())
    return (f"Stage wall time (s), with process start-up (s) / peak memory (MB): {stages}; "
            f"total {own:.1f} s, {whole:.1f} s with start-up")
