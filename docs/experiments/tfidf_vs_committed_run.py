"""The TF-IDF + logistic regression baseline against the classifiers of the committed run.

evaluate scores tfidf_logreg next to the others in every new run; this script compares it,
without retraining them, with the test predictions an earlier run committed
(reports/plots/predictions_<variant>.csv: one row per test review, in test order), on
evaluate's own bootstrap resamples (params.yaml evaluate.seed and bootstrap_samples), so the
differences are paired as in reports/comparison.md. Run after ``dvc repro train_tfidf``:

    python docs/experiments/tfidf_vs_committed_run.py
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
from pipeline.tfidf import TfidfLogReg


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
    model, _ = TfidfLogReg.load(Path(args.model), info["vocab_sha256"])
    tfidf_correct = model.predict_proba(test).argmax(1) == test.labels
    indices = bootstrap_indices(len(test), params.evaluate.bootstrap_samples,
                                params.evaluate.seed)
    low, high = accuracy_interval(tfidf_correct, indices)
    print(f"tfidf_logreg: test accuracy {100 * tfidf_correct.mean():.2f}% "
          f"[{100 * low:.2f}, {100 * high:.2f}] (C={model.C:g})")
    print("| variant (committed run) | test accuracy | Δ vs tfidf_logreg (points) [95% CI] |")
    print("|---|---|---|")
    for path in sorted(Path(args.predictions).glob("predictions_*.csv")):
        frame = pd.read_csv(path)
        actual = frame["actual"].map(names.index).to_numpy()
        if len(frame) != len(test) or (actual != test.labels).any():
            raise PipelineError(f"{path} is not in the order of this test set")
        correct = frame["predicted"].to_numpy() == frame["actual"].to_numpy()
        diff_low, diff_high = difference_interval(correct, tfidf_correct, indices)
        print(f"| {path.stem.removeprefix('predictions_')} | {100 * correct.mean():.2f}% | "
              f"{100 * (correct.mean() - tfidf_correct.mean()):+.2f} "
              f"[{100 * diff_low:+.2f}, {100 * diff_high:+.2f}] |")


if __name__ == "__main__":
    main()
