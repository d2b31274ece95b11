"""Per-stage wall times in reports/timings.json (not a DVC output: times vary run to run)."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

TIMINGS = Path("reports/timings.json")


def record_stage_time(stage: str, seconds: float, path: Path = TIMINGS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several DVC queue workers may finish at once
        timings = {}
        if path.exists():
            try:
                timings = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                timings = {}
        timings[stage] = round(seconds, 2)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def read_timings(path: Path = TIMINGS) -> dict[str, float]:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
