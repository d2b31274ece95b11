"""Data-parallel training on one machine: ``torchrun`` with N processes vs one process.

Runs the project's own stages on a pipeline run's token ids: the language model
(``pipeline.stages.pretrain``, ``--steps`` steps) and ``rnn_pretrained`` fine-tuning
(``pipeline.stages.train``, one epoch over ``--examples`` labeled reviews, from the language
model the first single-process run trained), with the settings of ``--params``
(params.yaml) otherwise, ``runtime.threads: 0`` included. Reference ("A"): one process,
which then takes every core. Project's data-parallel path ("B"): ``torchrun --standalone
--nproc_per_node=N``, each process taking cores / N threads. Rounds alternate A and B.
Figures: the language model's tokens/s (its ``reports/pretrain.json``) and the
classifier's training seconds (its ``train/rnn_pretrained.json``), medians; B / A as
speed ratios (above 1: data parallelism is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    REPO,
    emit,
    log,
    median,
    rounded,
    run_benchmark,
    whole_number,
)
from pipeline.errors import PipelineError  # noqa: E402


def bench_params(source: Path, steps: int, examples: int) -> dict:
    params = yaml.safe_load(source.read_text())
    params["pretrain"].update(epochs=1, steps_per_epoch=steps)
    params["classifier"]["train_examples"] = examples
    params["classifier"]["rnn_pretrained"]["epochs"] = 1
    params["runtime"]["threads"] = 0
    return params


def launcher(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", "-m"]


def run_trainer(processes: int, module: str, args: list[str], workdir: Path, log_file: Path
                ) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db"}
    with log_file.open("w") as out:
        done = subprocess.run([*launcher(processes), f"pipeline.stages.{module}", *args],
                              cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                              check=False)
    if done.returncode != 0:
        raise PipelineError(f"{module} with {processes} process(es) failed "
                            f"({done.returncode}): {log_file.read_text()[-1500:]}")


def figures(tokens_per_s: list[float], train_seconds: list[float]) -> dict:
    """One side's medians and samples."""
    return {"lm_tokens_per_s": rounded(median(tokens_per_s)),
            "lm_samples": [rounded(v) for v in tokens_per_s],
            "classifier_train_s": rounded(median(train_seconds)),
            "classifier_samples": [rounded(v) for v in train_seconds]}


def benchmark(args: argparse.Namespace) -> None:
    data = args.data.resolve()
    if not (data / "train_ids.npy").is_file():
        raise PipelineError(f"{data}: no train_ids.npy; run `dvc repro vocab` first or pass "
                            "--data <a vocab stage's output>")
    sides = {"A": 1, "B": args.processes}
    tokens_per_s: dict[str, list[float]] = {"A": [], "B": []}
    train_seconds: dict[str, list[float]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory(prefix="bench_ddp_") as tmp:
        work = Path(tmp)
        params = work / "params.yaml"
        params.write_text(yaml.safe_dump(bench_params(args.params, args.steps, args.examples)))
        lm = work / "lm_A1.pt"
        for round_ in range(1, args.rounds + 1):
            for side, processes in sides.items():
                name = f"{side}{round_}"
                log(f"round {round_}: {side} ({processes} process(es)), language model")
                run_trainer(processes, "pretrain",
                            ["--params", str(params), "--data", str(data),
                             "--out", str(work / f"lm_{name}.pt"),
                             "--metrics", str(work / f"pretrain_{name}.json"),
                             "--curve", str(work / f"pretrain_{name}.csv")],
                            work, work / f"pretrain_{name}.log")
                summary = json.loads((work / f"pretrain_{name}.json").read_text())
                tokens_per_s[side].append(summary["tokens_per_second"])
                log(f"round {round_}: {side} ({processes} process(es)), rnn_pretrained")
                out = work / f"train_{name}"
                run_trainer(processes, "train",
                            ["rnn_pretrained", "--params", str(params), "--data", str(data),
                             "--lm", str(lm), "--out-dir", str(out), "--reports", str(out)],
                            work, work / f"train_{name}.log")
                summary = json.loads((out / "train" / "rnn_pretrained.json").read_text())
                train_seconds[side].append(summary["train_seconds"])
    result = {
        "command": "python " + " ".join(sys.argv),
        "config": {"processes": args.processes, "rounds": args.rounds, "lm_steps": args.steps,
                   "classifier_examples": args.examples, "data": str(data)},
        "single_process": figures(tokens_per_s["A"], train_seconds["A"]),
        "torchrun": figures(tokens_per_s["B"], train_seconds["B"]),
        "lm_speedup": rounded(median(tokens_per_s["B"]) / median(tokens_per_s["A"])),
        "classifier_speedup": rounded(median(train_seconds["A"]) / median(train_seconds["B"])),
        "speedup_is": "torchrun / one process, as speed (tokens/s; 1 / training seconds)",
    }
    emit("ddp", result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "vocab",
                        help="a vocab stage's output (default: data/vocab)")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--processes", type=whole_number(2), default=2,
                        help="torchrun's processes")
    parser.add_argument("--rounds", type=whole_number(1), default=2, help="A B rounds")
    parser.add_argument("--steps", type=whole_number(1), default=150,
                        help="language-model steps")
    parser.add_argument("--examples", type=whole_number(1), default=4000,
                        help="labeled reviews of the one fine-tuning epoch")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round, 4 LM steps, 40 reviews")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.examples = 1, 4, 40
    sys.exit(run_benchmark(benchmark, args))


if __name__ == "__main__":
    main()
