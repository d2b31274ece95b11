"""Stage 6b — pseudo-label: a trained classifier labels the unlabeled reviews (self-training).

Runs when params.yaml ``self_training.teachers`` names a classifier (off by default; meant
for few-label runs, ``classifier.train_examples``). The teacher reads ``self_training.unlabeled``
unlabeled reviews (a seeded sample; all by default) and, for each class, the
``self_training.per_class`` reviews it gives the highest probability of that class are kept
with that class as their label (balanced, so a teacher leaning to one class does not tilt
the students). Train, valid and test are never read. Writes data/pseudo_labels.parquet
(``unlabeled_row``: row of the unlabeled split, ``label``, ``probability``: the teacher's)
and reports/pseudo_labels.json (counts, the lowest probability kept per class, time).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import tracking
from pipeline.artifacts import VOCAB_INFO_KEYS
from pipeline.batching import Corpus
from pipeline.config import EVALUATED, load_params
from pipeline.errors import PipelineError, run_stage
from pipeline.inference import saved_classifier_proba
from pipeline.io import atomic_outputs, read_json, require, write_json
from pipeline.runtime import setup


def confident(probs: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and pseudo-labels: for each class, the ``per_class`` rows not yet taken that
    ``probs`` gives the highest probability of it (a row goes to the first class that
    takes it; fewer when the rows run out)."""
    taken = np.zeros(len(probs), dtype=bool)
    rows, labels = [], []
    for c in range(probs.shape[1]):
        candidates = np.flatnonzero(~taken)
        best = candidates[np.argsort(-probs[candidates, c], kind="stable")[:per_class]]
        taken[best] = True
        rows.append(best)
        labels.append(np.full(len(best), c))
    return np.concatenate(rows), np.concatenate(labels)


def pool_rows(size: int, count: int | None, seed: int) -> np.ndarray:
    """Sorted rows of the unlabeled split the teacher reads: ``count`` at random, or all."""
    if count is None or count >= size:
        return np.arange(size)
    return np.sort(np.random.default_rng(seed).permutation(size)[:count])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("teacher", choices=EVALUATED)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data/vocab")
    parser.add_argument("--models", default="models")
    parser.add_argument("--out", default="data/pseudo_labels.parquet")
    parser.add_argument("--report", default="reports/pseudo_labels.json")
    args = parser.parse_args()
    params = load_params(args.params)
    settings = params.self_training
    data_dir = Path(args.data)
    info = read_json(require(data_dir / "info.json", "vocabulary"), VOCAB_INFO_KEYS)
    runtime = setup(params.runtime)
    tracking.connect()  # fail fast, before the teacher reads 50,000 reviews

    unlabeled = Corpus.load(data_dir, "unlabeled")
    if len(unlabeled) == 0:
        raise PipelineError(
            f"self-training needs unlabeled text, and {data_dir} has none (dataset "
            f"{params.data.dataset!r}): set self_training.teachers to [] or add unlabeled text "
            "(data.files.unlabeled)")
    rows = pool_rows(len(unlabeled), settings.unlabeled, params.classifier_seed)
    # the time to label and choose, as before: loading the teacher is not counted
    probs, seconds = saved_classifier_proba(args.teacher, Path(args.models),
                                            unlabeled.take(rows), info, runtime)
    started = time.perf_counter()
    chosen, labels = confident(probs, settings.per_class)
    seconds += time.perf_counter() - started
    label_names = info["label_names"]
    frame = pd.DataFrame({"unlabeled_row": rows[chosen], "label": labels,
                          "probability": probs[chosen, labels]})
    # what a student checks before training on these rows
    frame.attrs = {"teacher": args.teacher, "vocab_sha256": info["vocab_sha256"],
                   "unlabeled_documents": len(unlabeled)}
    counts = np.bincount(labels, minlength=len(label_names))
    report = {
        "teacher": args.teacher, "unlabeled_read": len(rows), "count": len(frame),
        "per_class": {name: int(counts[k]) for k, name in enumerate(label_names)},
        # how sure the teacher was of the least sure review kept, per class
        "min_probability": {name: float(frame["probability"][labels == k].min())
                            for k, name in enumerate(label_names) if counts[k]},
        "seconds": seconds}
    with tracking.stage_run(params, "pseudo_label", f"pseudo_label:{args.teacher}",
                            ("data", "self_training", "runtime")):
        import mlflow

        with atomic_outputs(args.out, args.report) as (out_tmp, report_tmp):
            frame.to_parquet(out_tmp, index=False)
            write_json(report_tmp, report)
            mlflow.log_metrics({"pseudo_labels": len(frame), "seconds": seconds})
            mlflow.log_artifact(str(report_tmp))
    kept = ", ".join(f"{name}: {count:,}" for name, count in report["per_class"].items())
    print(f"[pseudo_label] {args.teacher} read {len(rows):,} unlabeled reviews in "
          f"{seconds:.0f} s; kept {len(frame):,} ({kept})")


if __name__ == "__main__":
    run_stage("pseudo_label", main)
