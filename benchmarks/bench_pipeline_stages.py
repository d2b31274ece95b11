"""Wall time of the pipeline's stages, run in dvc.yaml's order, on a machine without DVC.

`dvc repro` is the way to run the pipeline. This script is for machines where DVC is not
installed and cannot be (the lent GPU machine here: no package registry): it runs each
stage's own `cmd` from dvc.yaml, in the file's order, with `foreach` and `matrix` stages
expanded from params.yaml, exactly as `dvc repro -f` would run them, and reads the seconds
each stage recorded in reports/timings.json. Stages before `--from` are expected to be there already
(e.g. data/vocab copied from a CPU run).

    python benchmarks/bench_pipeline_stages.py --from pretrain \
        --reference benchmarks/reference/cpu_timings_2026-11-26.json

prints one JSON line: per-stage seconds, the reference's seconds (another machine's run,
recorded: a cross-machine comparison), and their ratio. reports/timings.json starts afresh.
A failed stage is reported and the stages after it still run (each fails on its own if it
needed the missing output).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, emit, log  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.timing import TIMINGS, read_timings  # noqa: E402


def resolve(expression: str | list, params: dict) -> list[str]:
    """The list a ``foreach`` / ``matrix`` takes: written out in dvc.yaml, or from
    params.yaml as ``${section.key}``."""
    if isinstance(expression, list):
        return [str(item) for item in expression]
    if not (expression.startswith("${") and expression.endswith("}")):
        raise SystemExit(f"unsupported foreach / matrix value {expression!r}")
    value: object = params
    for part in expression[2:-1].split("."):
        value = value[part] if isinstance(value, dict) and part in value else None
    if not isinstance(value, list):
        raise SystemExit(f"{expression} is not a list in params.yaml")
    return [str(item) for item in value]


def stage_commands(dvc_yaml: Path, params: dict) -> list[tuple[str, str]]:
    """(stage name as DVC names it, command) in dvc.yaml's order, ``foreach`` and ``matrix``
    expanded from ``params`` (params.yaml as a dict) as DVC expands them."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    commands = []
    for name, stage in stages.items():
        if "foreach" in stage:
            for item in resolve(stage["foreach"], params):
                commands.append((f"{name}@{item}", stage["do"]["cmd"].replace("${item}", item)))
        elif "matrix" in stage:
            keys = list(stage["matrix"])
            for values in itertools.product(*(resolve(stage["matrix"][key], params)
                                              for key in keys)):
                command = stage["cmd"]
                for key, value in zip(keys, values, strict=True):
                    command = command.replace(f"${{item.{key}}}", value)
                commands.append((f"{name}@{'-'.join(values)}", command))
        else:
            commands.append((name, stage["cmd"]))
    return commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="first", default="fetch",
                        help="first stage to run (earlier stages' outputs must exist)")
    parser.add_argument("--reference", type=Path,
                        help="a reports/timings.json of another run, shown side by side")
    parser.add_argument("--log", type=Path, help="append the stages' output here")
    args = parser.parse_args()

    os.chdir(REPO)
    params = load_params()
    commands = stage_commands(REPO / "dvc.yaml", params.model_dump())
    names = [name for name, _ in commands]
    if args.first not in names:
        raise SystemExit(f"--from {args.first}: no such stage (stages: {', '.join(names)})")
    commands = commands[names.index(args.first):]
    TIMINGS.unlink(missing_ok=True)
    # one MLflow parent run for the whole execution, as under one `dvc repro`
    os.environ.setdefault("PIPELINE_RUN_ID", f"bench-stages-{int(time.time())}")

    failed = []
    start = time.perf_counter()
    for name, command in commands:
        log(f"{name}: {command}")
        stage_start = time.perf_counter()
        with open(args.log or os.devnull, "a") as out:
            out.write(f"\n===== {name}: {command}\n")
            out.flush()
            result = subprocess.run(command, shell=True, stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, "DVC_STAGE": name})
        seconds = time.perf_counter() - stage_start
        log(f"{name}: {'ok' if result.returncode == 0 else 'FAILED'} in {seconds:.1f} s")
        if result.returncode != 0:
            failed.append(name)
    total = time.perf_counter() - start

    recorded = read_timings()
    reference = read_timings(args.reference) if args.reference else {}
    stages = {}
    for name, _ in commands:
        entry: dict[str, object] = {key: recorded.get(name, {}).get(key)
                                    for key in ("seconds", "process_seconds", "peak_rss_mb")}
        if name in reference:
            entry["reference_seconds"] = reference[name]["seconds"]
            if entry["seconds"]:
                entry["speedup"] = round(reference[name]["seconds"] / entry["seconds"], 2)
        stages[name] = entry
    run_names = [name for name, _ in commands]
    reference_total = sum(reference[n]["seconds"] for n in run_names if n in reference)
    emit("pipeline_stages", {
        "first_stage": args.first,
        "total_seconds": round(total, 1),
        "reference_total_seconds": round(reference_total, 1) if reference else None,
        "reference": str(args.reference) if args.reference else None,
        "failed": failed,
        "stages": stages,
    }, describe_torch=True)  # the stages run torch: name its version and the GPU
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
