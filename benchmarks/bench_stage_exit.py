"""Stage process exit: what a stage process spends shutting down after its work is done.

A stage process holds torch, MLflow, pandas and scikit-learn; when Python shuts down it
runs full garbage collections over every one of their objects. ``pipeline.errors.run_stage``
freezes the collector once a stage has finished (``gc.freeze()``), which skips them.

Figure ("A"): seconds from the end of a stage's work to the process being gone, for a
process that imports a stage module (default: the train stage) and runs, under
``run_stage``, a ``main`` that only loads what a training stage loads at run time (MLflow's
SQL store and pyfunc models; no training). Reference ("B"), interleaved with A in the same
run: the same process, exiting as Python does by default. This is a lower bound: a real
stage leaves more objects behind (2.7 s measured for the tiny train stage before the
freeze).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from common import REPO, emit, log, median, rounded

CHILD = """
import time
import pipeline.stages.{stage}
from pipeline.errors import run_stage
def main():
    import mlflow.pyfunc, mlflow.store.tracking.sqlalchemy_store  # as tracking and logging do
{call}
print(time.time(), flush=True)
"""
CALLS = {"A": "run_stage('bench', main)", "B": "main()"}


def exit_seconds(stage: str, variant: str, workdir: str) -> tuple[float, float]:
    """(seconds from the end of main to the process being gone, whole wall seconds)."""
    started = time.time()
    done = subprocess.run([sys.executable, "-c", CHILD.format(stage=stage, call=CALLS[variant])],
                          cwd=workdir, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    ended = time.time()
    if done.returncode != 0:
        sys.exit(f"[bench] the {variant} process failed: {done.stderr.strip()[-1500:]}")
    main_ended = float(done.stdout.strip().splitlines()[-1])
    return ended - main_ended, ended - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stages = sorted(p.stem for p in (REPO / "pipeline" / "stages").glob("*.py")
                    if p.stem != "__init__")
    parser.add_argument("--stage", default="train", choices=stages,
                        help="the stage module to import")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    repeats = 1 if args.quick else args.repeats
    samples: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as workdir:  # run_stage writes reports/timings.json
        for repeat in range(1, repeats + 1):
            for variant in ("A", "B") if repeat % 2 else ("B", "A"):
                samples[variant].append(exit_seconds(args.stage, variant, workdir))
            log(f"repeat {repeat}/{repeats}: exit A {samples['A'][-1][0]:.2f} s, "
                f"B {samples['B'][-1][0]:.2f} s")
    exit_a, exit_b = (median([s[0] for s in samples[v]]) for v in ("A", "B"))
    wall_a, wall_b = (median([s[1] for s in samples[v]]) for v in ("A", "B"))
    emit("stage_exit", {
        "command": " ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "config": {"stage": args.stage, "repeats": repeats, "quick": args.quick},
        "A": {"exit_seconds": rounded(exit_a), "wall_seconds": rounded(wall_a),
              "samples_exit_s": [rounded(s[0]) for s in samples["A"]],
              "what": "a stage process under run_stage (gc frozen at the end)"},
        "B": {"exit_seconds": rounded(exit_b), "wall_seconds": rounded(wall_b),
              "samples_exit_s": [rounded(s[0]) for s in samples["B"]],
              "what": "the same process, default interpreter shutdown"},
        "exit_speedup": rounded(exit_b / exit_a),
        "seconds_saved_per_stage": rounded(wall_b - wall_a),
        "ratio_is": "B exit seconds / A exit seconds (medians)",
    }, describe_torch=False)


if __name__ == "__main__":
    main()
