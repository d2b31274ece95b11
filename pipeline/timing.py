"""Per-stage wall time and peak memory in reports/timings.json (not a DVC output: they vary
run to run). Each entry: ``{"seconds": ..., "peak_rss_mb": ...}``; the peak covers the
stage's own process and its largest child (e.g. a tokenizer worker)."""

from __future__ import annotations

import fcntl
import json
import os
import resource
from pathlib import Path

TIMINGS = Path("reports/timings.json")


def peak_rss_mb() -> float:
    """Largest resident set size so far of this process or any child it waited for (MB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024  # ru_maxrss is in KiB on Linux


def record_stage_time(stage: str, seconds: float, path: Path = TIMINGS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several DVC queue workers may finish at once
        timings = read_timings(path)
        timings[stage] = {"seconds": round(seconds, 2),
                          "peak_rss_mb": round(peak_rss_mb())}
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)


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
    return "Stage wall time (s) / peak memory (MB): " + ", ".join(
        f"{stage} {entry['seconds']:.1f} / {entry.get('peak_rss_mb', float('nan')):.0f}"
        for stage, entry in timings.items())
