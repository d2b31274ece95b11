"""Fine-tuning ablation: does the pretrained encoder help, and do ULMFiT's tricks help it?

Trains the RNN classifier on a subset of the labeled training reviews from the
pipeline's own outputs (``data/vocab`` and ``models/lm.pt``), once per configuration,
same data, seed and budget, and reports the best valid accuracy of each:

* ``scratch``          random init, one LR (the ``rnn_scratch`` variant)
* ``pretrained``       LM init, one LR (the ``rnn_pretrained`` default)
* ``pretrained+dlr``   LM init, ULMFiT's discriminative LRs (top LR x5, /2.6 per layer)
* ``pretrained+dlr+gu``  the same plus gradual unfreezing

Run after ``dvc repro`` (it needs the vocab stage's arrays and the language model):

    python benchmarks/ablation_finetune.py --train 4000 --max-len 200 --epochs 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pipeline.batching import Corpus
from pipeline.config import RuntimeParams, load_params
from pipeline.models import RNNClassifier, load_checkpoint
from pipeline.runtime import setup
from pipeline.stages.pretrain import encoder_config
from pipeline.stages.train import gradual_unfreezing
from pipeline.tasks import ClassifierTask
from pipeline.training import fit, one_cycle

CONFIGS = {  # name: (LM init, peak LR, per-layer LR decay, gradual unfreezing)
    "scratch": (False, 2e-3, 1.0, False),
    "pretrained": (True, 2e-3, 1.0, False),
    "pretrained+dlr": (True, 1e-2, 2.6, False),
    "pretrained+dlr+gu": (True, 5e-3, 2.6, True),
}


def sample(corpus: Corpus, count: int, seed: int) -> Corpus:
    """A random subset (both classes), not the first ``count`` documents (sorted by label)."""
    picked = np.sort(np.random.default_rng(seed).permutation(len(corpus))[:count])
    docs = [np.asarray(corpus.ids[corpus.offsets[i]:corpus.offsets[i + 1]]) for i in picked]
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in docs], out=offsets[1:])
    return Corpus(np.concatenate(docs), offsets, corpus.labels[picked])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/vocab")
    parser.add_argument("--lm", default="models/lm.pt")
    parser.add_argument("--train", type=int, default=4000, help="labeled reviews used")
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS))
    args = parser.parse_args()

    params = load_params()
    runtime = setup(RuntimeParams(threads=args.threads, seed=params.runtime.seed))
    data = Path(args.data)
    info = json.loads((data / "info.json").read_text())
    train = sample(Corpus.load(data, "train"), args.train, seed=0)
    valid = Corpus.load(data, "valid")
    lm, _ = load_checkpoint(Path(args.lm), "language_model", info["vocab_size"])
    results = {}
    for name in args.only or CONFIGS:
        init, lr, decay, unfreeze = CONFIGS[name]
        torch.manual_seed(params.runtime.seed)
        model = RNNClassifier(encoder_config(params, info["vocab_size"]),
                              len(info["label_names"]))
        if init:
            model.encoder.load_state_dict(lm.encoder.state_dict())
        groups = model.layer_groups()
        optimizer = torch.optim.AdamW(
            [{"params": g, "lr": lr / decay ** (len(groups) - 1 - i)}
             for i, g in enumerate(groups)], weight_decay=0.01)
        task = ClassifierTask(train, valid, 64, args.max_len, params.runtime.seed,
                              runtime.device)
        result = fit(model, task, optimizer, one_cycle(optimizer, args.epochs *
                                                       task.steps_per_epoch),
                     runtime, epochs=args.epochs, clip=1.0, monitor="valid_accuracy",
                     higher_is_better=True, desc=name,
                     on_epoch_start=gradual_unfreezing(model) if unfreeze else None)
        results[name] = [round(h["valid_accuracy"], 4) for h in result.history]
        print(json.dumps({"config": name, "valid_accuracy_per_epoch": results[name],
                          "best": max(results[name]), "seconds": round(result.seconds, 1)}))
    print("\n| config | best valid accuracy | per epoch |\n|---|---|---|")
    for name, accuracies in results.items():
        print(f"| {name} | {100 * max(accuracies):.1f}% | "
              + ", ".join(f"{100 * a:.1f}" for a in accuracies) + " |")


if __name__ == "__main__":
    main()
