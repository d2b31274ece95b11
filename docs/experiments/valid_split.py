"""Validation accuracy against test accuracy for one way of holding out valid (README:
Validation split). One-off, 2026-11-28; run from the repository root after `dvc repro vocab`:

    python docs/experiments/valid_split.py random   --work /tmp/vs/random
    python docs/experiments/valid_split.py blocks 10 --work /tmp/vs/blocks10
    python docs/experiments/valid_split.py pipeline  --work /tmp/vs/pipeline

``random``: the 2,500 random reviews of prepare.valid_split: random (data/prepared must have
been made with it); ``blocks N``: 1,250 reviews per polarity in randomly chosen blocks of N
consecutive review ids; ``pipeline``: data/prepared as it is (the default, whole movies).
It writes the prepared tables to --work, runs the tokenize, vocab and train stages there
(bag_of_embeddings, and rnn_scratch with --rnn, at classifier.max_len 400) and prints each
classifier's valid accuracy and its accuracy on all test reviews as a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.batching import Corpus
from pipeline.config import load_params
from pipeline.models import load_checkpoint
from pipeline.runtime import setup
from pipeline.tasks import predict_proba

PREPARED = Path("data/prepared")


def block_holdout(block: int, seed: int = 13) -> tuple[pd.DataFrame, pd.DataFrame]:
    full = pd.concat([pd.read_parquet(PREPARED / f"{s}.parquet") for s in ("train", "valid")])
    full = full.sort_values("id").reset_index(drop=True)
    _, polarity, number = zip(*full["id"].str.split("/"), strict=True)
    key = pd.Series(polarity) + ":" + (pd.Series(number).astype(int) // block).astype(str)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for side in ("pos", "neg"):
        keys = sorted(set(key[pd.Series(polarity) == side]))
        chosen |= set(rng.choice(keys, size=round(1250 / block), replace=False))
    held = key.isin(chosen).to_numpy()
    return full[~held].reset_index(drop=True), full[held].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("random", "blocks", "pipeline"))
    parser.add_argument("block", type=int, nargs="?", default=50)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--rnn", action="store_true", help="also train rnn_scratch (~25 min)")
    parser.add_argument("--seed", type=int, help="runtime.seed (initialization, batch order)")
    args = parser.parse_args()
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    (work / "data/prepared").mkdir(parents=True)
    for name in ("test.parquet", "unlabeled.parquet", "info.json", "train.parquet",
                 "valid.parquet"):
        shutil.copy(PREPARED / name, work / "data/prepared" / name)
    if args.mode == "blocks":
        train, valid = block_holdout(args.block)
        train.to_parquet(work / "data/prepared/train.parquet", index=False)
        valid.to_parquet(work / "data/prepared/valid.parquet", index=False)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["classifier"]["max_len"] = 400
    if args.seed is not None:
        params["runtime"]["seed"] = args.seed
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"}

    def stage(*command: str) -> None:
        subprocess.run([sys.executable, "-m", *command], cwd=work, env=env, check=True)

    stage("pipeline.stages.tokenize")
    stage("pipeline.stages.vocab")
    variants = ["bag_of_embeddings"] + (["rnn_scratch"] if args.rnn else [])
    for variant in variants:
        stage("pipeline.stages.train", variant)
    runtime = setup(load_params(work / "params.yaml").runtime)
    info = json.loads((work / "data/vocab/info.json").read_text())
    test = Corpus.load(work / "data/vocab", "test")
    for variant in variants:
        model, blob = load_checkpoint(work / "models" / f"{variant}.pt",
                                      vocab_size=info["vocab_size"])
        probs = predict_proba(model, test, 256, blob["max_len"], runtime.device, runtime)
        summary = json.loads((work / "reports/train" / f"{variant}.json").read_text())
        print(json.dumps({"mode": args.mode, "block": args.block, "seed": args.seed,
                          "variant": variant,
                          "valid_accuracy": summary["valid_accuracy"],
                          "test_accuracy": float((probs.argmax(1) == test.labels).mean()),
                          "best_epoch": summary["best_epoch"]}))


if __name__ == "__main__":
    main()
