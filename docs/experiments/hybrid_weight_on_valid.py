"""Would a hybrid weight chosen on valid beat evaluate's equal-weight average?

evaluate's ``<rnn>_with_nb_logreg`` rows average an RNN's and nb_logreg's class probabilities
with equal weights, nothing tuned. This one-off test scores the saved classifiers on the
valid split, picks the weight w of the RNN (p = w * rnn + (1 - w) * nb_logreg, w on a grid
of 0.05) with the best valid accuracy (ties: the w nearest 0.5), and reports that weight's
test accuracy next to w = 0.5 and the parts, on evaluate's paired bootstrap resamples
(params.yaml ``evaluate``). The weight is chosen from valid alone.

Run from the project root after ``dvc repro`` (models/ and data/vocab of the default run):

    python docs/experiments/hybrid_weight_on_valid.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pipeline.batching import Corpus
from pipeline.config import load_params
from pipeline.inference import saved_classifier_proba
from pipeline.io import read_json
from pipeline.metrics import accuracy_interval, bootstrap_indices, difference_interval
from pipeline.runtime import setup

WEIGHTS = np.round(np.arange(0.0, 1.0001, 0.05), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/vocab"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--ngram", default="nb_logreg")
    args = parser.parse_args()
    params = load_params()
    runtime = setup(params.runtime)
    info = read_json(args.data / "info.json", ("vocab_sha256", "vocab_size"))
    rnns = {"rnn_pretrained": ["rnn_pretrained"],
            "rnn_pretrained_ensemble": ["rnn_pretrained", "rnn_pretrained_backward"]}
    splits = {s: Corpus.load(args.data, s) for s in ("valid", "test")}
    # each classifier scored once per split; the ensemble is the mean of its parts' (as the
    # ensemble stage averages them)
    proba = {(variant, s): saved_classifier_proba(variant, args.models, corpus, info,
                                                  runtime)[0]
             for variant in {args.ngram, *(v for parts in rnns.values() for v in parts)}
             for s, corpus in splits.items()}
    for name, parts in rnns.items():
        for s in splits:
            proba[(name, s)] = np.mean([proba[(v, s)] for v in parts], axis=0)
    test = splits["test"]
    indices = bootstrap_indices(len(test), params.evaluate.bootstrap_samples,
                                params.evaluate.seed)
    ngram_right = proba[(args.ngram, "test")].argmax(1) == test.labels
    print(f"| RNN | w chosen on valid | valid accuracy at w / at 0.5 | test at w [95% CI] | "
          f"test at 0.5 | Δ (w vs 0.5) [95% CI] | Δ (w vs {args.ngram}) [95% CI] |")
    print("|---|---|---|---|---|---|---|")
    for name in rnns:
        def right(split: str, w: float, name: str = name) -> np.ndarray:
            mixed = w * proba[(name, split)] + (1 - w) * proba[(args.ngram, split)]
            return mixed.argmax(1) == splits[split].labels

        valid = {w: right("valid", w).mean() for w in WEIGHTS}
        best = max(WEIGHTS, key=lambda w: (valid[w], -abs(w - 0.5)))
        chosen, equal = right("test", best), right("test", 0.5)
        low, high = accuracy_interval(chosen, indices)
        d_low, d_high = difference_interval(chosen, equal, indices)
        n_low, n_high = difference_interval(chosen, ngram_right, indices)
        print(f"| {name} | {best:.2f} | {100 * valid[best]:.2f}% / {100 * valid[0.5]:.2f}% | "
              f"{100 * chosen.mean():.2f}% [{100 * low:.2f}, {100 * high:.2f}] | "
              f"{100 * equal.mean():.2f}% | {100 * (chosen.mean() - equal.mean()):+.2f} "
              f"[{100 * d_low:+.2f}, {100 * d_high:+.2f}] | "
              f"{100 * (chosen.mean() - ngram_right.mean()):+.2f} "
              f"[{100 * n_low:+.2f}, {100 * n_high:+.2f}] |")
        print("valid accuracy by w: " + ", ".join(f"{w:.2f}: {100 * a:.2f}"
                                                  for w, a in valid.items()))


if __name__ == "__main__":
    main()
