"""Stage 6c — train an n-gram + logistic regression baseline, its C chosen on valid.

The strongest cheap bag-of-words baselines, so the comparison is not only against a bag of
embeddings: ``tfidf_logreg`` (TF-IDF, 90.6-90.8% on IMDB in the literature) and
``nb_logreg`` (naive Bayes-weighted n-grams, Wang & Manning 2012's NBSVM: 91.2%). Each
trains on the same labeled examples as the other classifiers
(``classifier.train_examples``'s sample) and reads the same token ids, but whole reviews.
Writes models/<variant>.pt (pipeline/ngrams.py: tensors, no pickle),
reports/train/<variant>.json (the training summary every classifier writes) and
reports/curves/<variant>.csv (valid accuracy for each C of the grid).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from pipeline import tracking
from pipeline.artifacts import VOCAB_INFO_KEYS
from pipeline.batching import Corpus
from pipeline.config import NGRAM_BASELINES, load_params
from pipeline.errors import run_stage
from pipeline.io import atomic_outputs, read_json, require, write_json
from pipeline.ngrams import NgramLogReg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("variant", choices=list(NGRAM_BASELINES))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data/vocab")
    parser.add_argument("--out-dir", default="models")
    parser.add_argument("--reports", default="reports")
    args = parser.parse_args()
    params = load_params(args.params)
    name = args.variant
    settings = getattr(params.classifier, name)
    data_dir = Path(args.data)
    info = read_json(require(data_dir / "info.json", "vocabulary"), VOCAB_INFO_KEYS)
    tracking.connect()  # fail fast, before any training

    labeled = Corpus.load(data_dir, "train").labeled_sample(
        params.classifier.train_examples, params.classifier_seed)
    valid = Corpus.load(data_dir, "valid")
    with tracking.stage_run(params, f"train_{name}", f"clf:{name}",
                            ("data", "vocab", "classifier", "runtime")) as run:
        import mlflow

        mlflow.set_tag("variant", name)
        started = time.perf_counter()
        model, history = NgramLogReg.fit(labeled, valid, NGRAM_BASELINES[name], settings.C,
                                         settings.ngram_max, settings.min_df, settings.max_iter,
                                         params.classifier_seed, f"classifier.{name}")
        seconds = time.perf_counter() - started
        for step, row in enumerate(history):  # the C grid as steps: a tuning curve in the UI
            mlflow.log_metrics({"valid_accuracy_at_C": row["valid_accuracy"], "C": row["C"]},
                               step=step)
        best = max(row["valid_accuracy"] for row in history)
        summary = {"variant": name, "valid_accuracy": best, "C": model.C,
                   "weighting": model.weighting,
                   "features": len(model.vectorizer.vocabulary_), "train_seconds": seconds,
                   "mlflow_run_id": run.info.run_id, "train_examples": len(labeled)}
        model_path = Path(args.out_dir) / f"{name}.pt"
        curve_path = Path(args.reports) / "curves" / f"{name}.csv"
        summary_path = Path(args.reports) / "train" / f"{name}.json"
        with atomic_outputs(model_path, curve_path, summary_path) as (model_tmp, curve_tmp,
                                                                      summary_tmp):
            model.save(model_tmp, {"label_names": info["label_names"], "variant": name,
                                   "vocab_sha256": info["vocab_sha256"]})
            pd.DataFrame(history).to_csv(curve_tmp, index=False)
            write_json(summary_tmp, summary)
            mlflow.log_metrics({"valid_accuracy": best, "train_seconds": seconds,
                                "features": summary["features"]})
            mlflow.log_artifact(str(model_tmp), artifact_path="model")
            mlflow.log_artifact(str(curve_tmp), artifact_path="curves")
    print(f"[{name}] best valid accuracy {best:.4f} (C={model.C:g}, "
          f"{summary['features']:,} n-grams, {seconds:.0f} s)")


if __name__ == "__main__":
    run_stage("train_ngrams", main)
