"""A larger language model on one GPU: does LM capacity make the pretrained RNN beat nb_logreg?

A one-off test for a lent GPU machine with a short lease (docs/experiments/README.md). It runs
the pipeline's own stages, pretrain and then ``train rnn_pretrained``, with an encoder of
AWD-LSTM's size (3 x 1,150 LSTM units, embeddings 400; the same 30,000-word vocabulary,
adaptive softmax and dropouts as the default) instead of the default 2 x 256, a peak LM
learning rate of 5e-4 (2e-3 kept this LSTM at the unigram plateau, ppl ~780, until the one-cycle
schedule decayed it: run 1 of 2026-12-04) and fine-tuning at 1e-3. The language model gets
as many steps as fit the time left: a throughput probe (benchmarks/bench_lm_throughput.py with
these params) sets ``pretrain.steps_per_epoch``. Then it scores the classifier on the test set
and compares it with a committed run's classifiers on evaluate's paired bootstrap resamples
(params.yaml ``evaluate``), alone and averaged with that run's nb_logreg (the hybrid).

Run from the project root, with data/vocab made by the default pipeline (the second run of
2026-12-04 on an H200; results and logs in docs/experiments/h200-2026-12-04/):

    python docs/experiments/larger_lm_gpu.py --seconds 330 --tokens-per-s 234718 \\
        --stage-overhead 20 --classifier-speed 1.5 \\
        --committed reports/test_probabilities.parquet --out results/
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from compare_with_committed_run import comparison_table  # this folder's, on sys.path

from pipeline.batching import Corpus
from pipeline.config import Params, load_params, with_overrides
from pipeline.errors import PipelineError
from pipeline.inference import saved_classifier_proba
from pipeline.io import read_json
from pipeline.metrics import bootstrap_indices
from pipeline.runtime import setup

PARAMS = Path("params_larger_lm.yaml")
OVERRIDES = {
    "model.embedding_dim": 400, "model.hidden": 1150, "model.layers": 3,
    "pretrain.lr": 0.0005, "pretrain.epochs": 2,
    "classifier.rnn_pretrained.lr": 0.001, "classifier.rnn_pretrained.epochs": 3,
    "ensemble.directions": [],
    "runtime.checkpoint_every": 0,  # a 45 M-parameter model + optimizer every 200 steps
}
NAME = "rnn_pretrained_larger_lm"
HYBRID_WITH = "nb_logreg"
VERSUS = ("nb_logreg", "bag_of_embeddings", "rnn_pretrained")


def write_params(changes: dict[str, object]) -> Params:
    """params.yaml with dotted-key ``changes``, validated as the stages will read it."""
    params = with_overrides(load_params(), changes, f"params.yaml + {PARAMS}")
    PARAMS.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    return params


def run(command: list[str], log: Path) -> float:
    """Run one stage; its output goes to the console and to ``log``; the seconds it took."""
    print("$ " + " ".join(command), flush=True)
    started = time.monotonic()
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        for line in process.stdout:
            sys.stdout.write(line)
            sink.write(line)
    if process.wait():
        raise PipelineError(f"{' '.join(command)} failed (exit {process.returncode}); see {log}")
    return time.monotonic() - started


def probe_tokens_per_s(out: Path, steps: int, device: str) -> float:
    command = [sys.executable, "benchmarks/bench_lm_throughput.py", "--params", str(PARAMS),
               "--device", device, "--threads", "8",
               "--rounds", "2", "--steps", str(steps), "--ref-steps", "1", "--warmup", "2",
               "--distribution", "zipf"]
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    (out / "probe.log").write_text(result.stderr + result.stdout)
    if result.returncode:
        raise PipelineError(f"the throughput probe failed; see {out / 'probe.log'}")
    record = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    (out / "probe.json").write_text(json.dumps(record, indent=1))
    return float(record["project"]["tokens_per_s"])


def classifier_tokens(data: Path, max_len: int) -> int:
    lengths = np.diff(np.load(data / "train_offsets.npy"))
    return int(np.minimum(lengths, max_len).sum())


def compare(probs: np.ndarray, test: Corpus, committed: Path, samples: int, seed: int) -> str:
    frame = pd.read_parquet(committed)
    if len(frame) != len(test) or (frame["label"].to_numpy() != test.labels).any():
        raise PipelineError(f"{committed} is not in the order of this test set")
    variants = [column.removesuffix(".pos") for column in frame if column.endswith(".pos")]
    proba = {name: frame[[f"{name}.neg", f"{name}.pos"]].to_numpy() for name in variants}
    proba[NAME] = probs
    proba[f"{NAME}_with_{HYBRID_WITH}"] = (probs + proba[HYBRID_WITH]) / 2
    correct = {name: p.argmax(1) == test.labels for name, p in proba.items()}
    source = {name: "this run" if name.startswith(NAME) else "committed run" for name in correct}
    indices = bootstrap_indices(len(test), samples, seed)
    return "\n".join(comparison_table(correct, VERSUS, source, indices)) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, required=True,
                        help="wall-time budget for everything this script does")
    parser.add_argument("--committed", type=Path, required=True,
                        help="the committed run's reports/test_probabilities.parquet")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/vocab"))
    parser.add_argument("--probe-steps", type=int, default=10)
    parser.add_argument("--max-lm-seconds", type=float, default=360.0)
    parser.add_argument("--stage-overhead", type=float, default=45.0,
                        help="seconds a stage spends outside its training loop (start, "
                             "MLflow, valid, saving); 15 on the H200")
    parser.add_argument("--classifier-speed", type=float, default=0.6,
                        help="fine-tuning tokens/s as a fraction of the LM probe's (no softmax, "
                             "but variable lengths); 1.9 on the H200")
    parser.add_argument("--tokens-per-s", type=float, default=None,
                        help="the LM's training throughput, instead of probing it")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="one more override (YAML value), e.g. model.hidden=64")
    args = parser.parse_args()
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.committed.is_file():
        raise PipelineError(f"--committed {args.committed}: not found")

    overrides = dict(OVERRIDES)
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    params = write_params(overrides)
    runtime = setup(params.runtime)
    tokens_per_s = args.tokens_per_s or probe_tokens_per_s(args.out, args.probe_steps,
                                                           runtime.device.type)
    step_tokens = params.pretrain.batch_size * params.pretrain.bptt
    epoch_s = (classifier_tokens(args.data, params.classifier.max_len)
               / (args.classifier_speed * tokens_per_s))
    left = args.seconds - (time.monotonic() - started) - 3 * args.stage_overhead  # 2 stages + score
    epochs = 3 if left - 3 * epoch_s >= 120 else 2
    if left - epochs * epoch_s < 30:
        raise PipelineError(f"{left:.0f} s left is too little "
                            f"(a fine-tuning epoch ~{epoch_s:.0f} s)")
    lm_seconds = min(args.max_lm_seconds, left - epochs * epoch_s)
    steps_per_epoch = max(1, int(lm_seconds * tokens_per_s / step_tokens / params.pretrain.epochs))
    plan = {"probe_tokens_per_s": tokens_per_s, "lm_seconds_planned": round(lm_seconds),
            "steps_per_epoch": steps_per_epoch, "lm_epochs": params.pretrain.epochs,
            "lm_tokens": steps_per_epoch * params.pretrain.epochs * step_tokens,
            "classifier_epochs": epochs, "classifier_epoch_s_estimate": round(epoch_s)}
    print(json.dumps(plan), flush=True)
    write_params({**overrides, "pretrain.steps_per_epoch": steps_per_epoch,
                  "classifier.rnn_pretrained.epochs": epochs})
    (args.out / PARAMS.name).write_text(PARAMS.read_text())

    python = [sys.executable, "-m"]
    plan["pretrain_s"] = run([*python, "pipeline.stages.pretrain", "--params", str(PARAMS),
                              "--data", str(args.data), "--out", "models/lm.pt",
                              "--metrics", "reports/pretrain.json",
                              "--curve", "reports/curves/pretrain.csv"], args.out / "pretrain.log")
    plan["train_s"] = run([*python, "pipeline.stages.train", "rnn_pretrained",
                           "--params", str(PARAMS), "--data", str(args.data),
                           "--lm", "models/lm.pt", "--out-dir", "models", "--reports", "reports"],
                          args.out / "train.log")

    info = read_json(args.data / "info.json", ("vocab_sha256", "vocab_size"))
    test = Corpus.load(args.data, "test")
    probs, seconds = saved_classifier_proba("rnn_pretrained", Path("models"), test, info,
                                            runtime)
    plan["test_inference_s"] = round(seconds, 1)
    pd.DataFrame({"neg": probs[:, 0], "pos": probs[:, 1]}).to_csv(
        args.out / "test_probabilities.csv", index=False, float_format="%.6f")
    table = compare(probs, test, args.committed, params.evaluate.bootstrap_samples,
                    params.evaluate.seed)
    print(table)
    (args.out / "comparison.md").write_text(table)
    plan["pretrain"] = read_json(Path("reports/pretrain.json"))
    plan["train"] = read_json(Path("reports/train/rnn_pretrained.json"))
    plan["seconds"] = round(time.monotonic() - started, 1)
    (args.out / "summary.json").write_text(json.dumps(plan, indent=1))
    print(json.dumps(plan, indent=1))


if __name__ == "__main__":
    main()
