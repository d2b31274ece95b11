"""Few labels vs language-model strength: does a better LM make 1,000 labels go further?

Trains a language model of ``--lm-epochs`` x 1,000 steps with the pipeline's own pretrain
stage, then fine-tunes ``rnn_pretrained`` on the learning curve's ``n1000`` point (the
``studies.common`` settings, then ``studies.learning_curve.n1000``) once per seed with the
train stage (``runtime.seed`` also draws the 1,000 labeled reviews), and prints each
model's valid accuracy (the stage's own figure) and its accuracy on all test reviews
(``pipeline.tasks.predict_proba``, as evaluate computes it). One-off exploration, not a
stage; run from the repository root after ``dvc repro vocab``:

    python docs/experiments/few_label_lm_strength.py --lm-epochs 3 --seeds 42 43 44 --out /tmp/fl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from pipeline.batching import Corpus
from pipeline.config import Params, load_params, with_overrides
from pipeline.models import load_checkpoint
from pipeline.tasks import predict_proba


def write_params(params: Params, changes: dict, path: Path) -> Path:
    """params.yaml with dotted-key changes, validated as the stages will read it."""
    changed = with_overrides(params, changes, str(path))
    path.write_text(yaml.safe_dump(changed.model_dump(mode="json"), sort_keys=False))
    return path


def stage(*args: str) -> None:
    subprocess.run([sys.executable, "-m", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lm-epochs", type=int, default=3, help="LM epochs of 1,000 steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{args.out.resolve()}/mlflow.db")

    base = load_params(Path("params.yaml"))
    n1000 = {**base.studies.common, **base.studies.learning_curve["n1000"].set}
    own = {"pretrain.epochs": args.lm_epochs,
           "runtime.checkpoint_dir": str(args.out / "checkpoints")}
    lm = args.out / f"lm_{args.lm_epochs}x1000.pt"
    stage("pipeline.stages.pretrain", "--params",
          str(write_params(base, own, args.out / "params_lm.yaml")), "--data", "data/vocab",
          "--out", str(lm), "--metrics", str(args.out / "pretrain.json"),
          "--curve", str(args.out / "pretrain.csv"))
    perplexity = json.loads((args.out / "pretrain.json").read_text())["valid_perplexity"]

    test = Corpus.load(Path("data/vocab"), "test")
    for seed in args.seeds:
        run = args.out / f"seed{seed}"
        params = write_params(base, {**own, **n1000, "runtime.seed": seed},
                              args.out / f"params_seed{seed}.yaml")
        stage("pipeline.stages.train", "rnn_pretrained", "--params", str(params),
              "--data", "data/vocab", "--lm", str(lm), "--out-dir", str(run),
              "--reports", str(run))
        valid = json.loads((run / "train/rnn_pretrained.json").read_text())
        model, blob = load_checkpoint(run / "rnn_pretrained.pt")
        probs = predict_proba(model, test, 256, blob["max_len"], torch.device("cpu"))
        accuracy = float((probs.argmax(1) == np.asarray(test.labels)).mean())
        print(json.dumps({"lm_epochs": args.lm_epochs, "lm_perplexity": round(perplexity, 1),
                          "seed": seed, "valid_accuracy": valid.get("valid_accuracy"),
                          "test_accuracy": round(accuracy, 4)}), flush=True)


if __name__ == "__main__":
    main()
