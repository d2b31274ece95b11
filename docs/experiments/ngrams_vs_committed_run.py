"""An n-gram + logistic regression baseline against the classifiers of the committed run.

evaluate scores tfidf_logreg and nb_logreg next to the others in every new run; this script
compares one of them (``--model``),
without retraining them, with the test predictions an earlier run committed
(reports/plots/predictions_<variant>.csv: one row per test review, in test order), on
evaluate's own bootstrap resamples (params.yaml evaluate.seed and bootstrap_samples), so the
differences are paired as in reports/comparison.md. Run after ``dvc repro train_ngrams``:

    python docs/experiments/ngrams_vs_committed_run.py --model models/nb_logreg.pt
    python docs/experiments/ngrams_vs_committed_run.py --model models/tfidf_logreg.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pipeline.batching import Corpus
from pipeline.config import load_params
from pipeline.errors import PipelineError
from pipeline.io import read_json
from pipeline.metrics import accuracy_interval, bootstrap_indices, difference_interval
from pipeline.ngrams import NgramLogReg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/vocab")
    parser.add_argument("--model", default="models/tfidf_logreg.pt")
    parser.add_argument("--predictions", default="reports/plots")
    args = parser.parse_args()
    params = load_params()
    info = read_json(Path(args.data) / "info.json", ("vocab_sha256", "label_names"))
    test = Corpus.load(Path(args.data), "test")
    names = info["label_names"]
    model, blob = NgramLogReg.load(Path(args.model), info["vocab_sha256"])
    name = blob["variant"]
    baseline_correct = model.predict_proba(test).argmax(1) == test.labels
    indices = bootstrap_indices(len(test), params.evaluate.bootstrap_samples,
                                params.evaluate.seed)
    low, high = accuracy_interval(baseline_correct, indices)
    print(f"{name}: test accuracy {100 * baseline_correct.mean():.2f}% "
          f"[{100 * low:.2f}, {100 * high:.2f}] (C={model.C:g})")
    print(f"| variant (committed run) | test accuracy | Δ vs {name} (points) [95% CI] |")
    print("|---|---|---|")
    for path in sorted(Path(args.predictions).glob("predictions_*.csv")):
        frame = pd.read_csv(path)
        actual = frame["actual"].map(names.index).to_numpy()
        if len(frame) != len(test) or (actual != test.labels).any():
            raise PipelineError(f"{path} is not in the order of this test set")
        correct = frame["predicted"].to_numpy() == frame["actual"].to_numpy()
        diff_low, diff_high = difference_interval(correct, baseline_correct, indices)
        print(f"| {path.stem.removeprefix('predictions_')} | {100 * correct.mean():.2f}% | "
              f"{100 * (correct.mean() - baseline_correct.mean()):+.2f} "
              f"[{100 * diff_low:+.2f}, {100 * diff_high:+.2f}] |")


if __name__ == "__main__":
    main()
