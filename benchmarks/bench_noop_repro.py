"""No-op ``dvc repro``: how long DVC takes to decide that nothing needs to run.

Figure ("A"): wall time of ``dvc repro`` in an up-to-date repository (median of
``--repeats``, target <= 5 s). References measured in the same run, interleaved with it:
``dvc status`` (the read-only up-to-date check alone) and ``dvc --version`` (the CLI's
start-up floor: Python + DVC imports); the ratios say how much of the no-op repro is
start-up and how much is the check itself.

Safety: it only ever times a repro that has nothing to do. Before timing it refuses to run
when the repo has no dvc.lock, when a ``dvc repro`` / ``dvc exp run`` is already running
in that repo, or when ``dvc status`` reports any changed stage (it then names them and
exits 1 without running ``dvc repro``). After each repro it checks the output says that
nothing ran ("Data and pipelines are up to date." and no "Running stage"); otherwise it
prints a warning and exits 1. DVC analytics are turned off for the runs (DVC_NO_ANALYTICS).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from common import REPO, emit, log, median, rounded, timed

TARGET_SECONDS = 5.0
UP_TO_DATE = "Data and pipelines are up to date."


def dvc_processes() -> list[tuple[int, Path | None, str]]:
    """(pid, cwd, command line) of running ``dvc repro`` / ``dvc exp run`` processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        names = [Path(arg).name for arg in args[:3]]
        if "dvc" not in names:
            continue
        rest = args[names.index("dvc") + 1:]
        if "repro" in rest or ("exp" in rest and "run" in rest):
            try:
                cwd: Path | None = (entry / "cwd").resolve()
            except OSError:
                cwd = None
            found.append((int(entry.name), cwd, " ".join(a for a in args if a)))
    return found


def run_dvc(dvc: list[str], args: list[str], repo: Path
            ) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return timed(lambda: subprocess.run([*dvc, *args], cwd=repo, env=env, capture_output=True,
                                        text=True, check=False))


def fail(message: str, code: int = 1) -> None:
    print(f"[bench] WARNING: {message}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=REPO, help="an up-to-date DVC repo")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dvc", default=None,
                        help="the dvc command (default: dvc on PATH, as a user runs it)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    repo = args.repo.resolve()
    dvc_path = args.dvc or shutil.which("dvc")
    if dvc_path is None:
        fail("dvc not found on PATH (pass --dvc)", 2)
    dvc = [dvc_path]

    if not (repo / "dvc.yaml").is_file() or not (repo / "dvc.lock").is_file():
        fail(f"{repo} has no dvc.yaml + dvc.lock: run the pipeline once (dvc repro) first", 2)
    others = dvc_processes()
    here = [p for p in others if p[1] is not None and (p[1] == repo or repo in p[1].parents)]
    if here:
        fail("a dvc run is in progress in this repo (pid " + ", ".join(str(p[0]) for p in here)
             + "): not timing", 2)
    if others:
        log(f"WARNING: {len(others)} dvc run(s) elsewhere share the CPU: "
            + "; ".join(f"pid {pid} in {cwd}" for pid, cwd, _ in others))

    log(f"checking {repo} is up to date (dvc status --json)")
    _, status = run_dvc(dvc, ["status", "--json"], repo)
    if status.returncode != 0:
        fail(f"dvc status failed (exit {status.returncode}): {status.stderr.strip()[-500:]}", 2)
    try:
        changed = json.loads(status.stdout or "{}")
    except json.JSONDecodeError:
        fail(f"unexpected dvc status output: {status.stdout.strip()[-500:]}", 2)
    if changed:
        fail("not up to date, so dvc repro would run stages; changed: "
             + ", ".join(sorted(changed)) + " (not timing)")

    seconds: dict[str, list[float]] = {"repro": [], "status": [], "version": []}
    commands = {"version": ["--version"], "status": ["status"], "repro": ["repro"]}
    for repeat in range(1, args.repeats + 1):
        for name, dvc_args in commands.items():
            elapsed, done = run_dvc(dvc, dvc_args, repo)
            output = done.stdout + done.stderr
            if done.returncode != 0:
                fail(f"dvc {' '.join(dvc_args)} failed (exit {done.returncode}): "
                     f"{output.strip()[-800:]}")
            if name == "repro" and ("Running stage" in output or UP_TO_DATE not in output):
                fail("dvc repro did not report a no-op (a stage may have run):\n"
                     + output.strip()[-2000:])
            seconds[name].append(elapsed)
        log(f"repeat {repeat}/{args.repeats}: repro {seconds['repro'][-1]:.2f} s, "
            f"status {seconds['status'][-1]:.2f} s, --version {seconds['version'][-1]:.2f} s")

    repro, status_s, version_s = (median(seconds[k]) for k in ("repro", "status", "version"))
    version = subprocess.run([*dvc, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    emit("noop_repro", {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {"repo": str(repo), "dvc": dvc_path, "dvc_version": version,
                   "stages": sum(1 for line in (repo / "dvc.lock").read_text().splitlines()
                                 if line.startswith("  ") and not line.startswith("   ")
                                 and line.rstrip().endswith(":")),
                   "repeats": args.repeats, "quick": args.quick},
        "repro": {"seconds": rounded(repro), "samples_s": [rounded(s) for s in seconds["repro"]],
                  "what": "dvc repro (nothing to reproduce)"},
        "reference": {
            "status_seconds": rounded(status_s),
            "startup_seconds": rounded(version_s),
            "samples_status_s": [rounded(s) for s in seconds["status"]],
            "samples_startup_s": [rounded(s) for s in seconds["version"]],
            "what": "dvc status (read-only check) and dvc --version (CLI start-up)"},
        "ratio_vs_status": rounded(repro / status_s),
        "ratio_vs_startup": rounded(repro / version_s),
        "ratio_is": "dvc repro seconds / reference seconds (medians)",
        "target_seconds": TARGET_SECONDS,
        "meets_target": bool(repro <= TARGET_SECONDS),
    })


if __name__ == "__main__":
    main()
