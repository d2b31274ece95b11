"""Stage 7 — evaluate every classifier on the same test set and compare them.

Writes reports/metrics.json (the contract read by CI and benchmarks),
reports/comparison.md, DVC plot data under reports/plots/ and PNG plots.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import plots, tracking
from pipeline.batching import Corpus
from pipeline.config import VARIANTS, Params, load_params
from pipeline.errors import run_stage
from pipeline.io import atomic_path, read_json, require, write_json
from pipeline.metrics import (
    accuracy_interval,
    bootstrap_indices,
    classification_metrics,
    difference_interval,
    roc_points,
)
from pipeline.models import load_checkpoint
from pipeline.runtime import setup
from pipeline.tasks import predict_proba
from pipeline.timing import read_timings
from pipeline.timing import summary as timing_summary

BASELINE = "bag_of_embeddings"


def fmt_pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f}"


def comparison_table(results: dict, dataset: dict, lm: dict, capped: bool) -> str:
    lines = [
        f"# Comparison on {dataset['name']} (test: {dataset['test']:,} examples)",
        "",
        "| variant | test accuracy % [95% CI] | macro-F1 % | ROC-AUC | "
        f"Δ accuracy vs {BASELINE} (points) [95% CI] | train time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in results.items():
        test = entry["test"]
        low, high = test["accuracy_ci95"]
        diff = entry.get("vs_baseline")
        diff_text = "—" if diff is None else (
            f"{100 * diff['accuracy_diff']:+.2f} "
            f"[{100 * diff['ci95'][0]:+.2f}, {100 * diff['ci95'][1]:+.2f}]")
        auc = "n/a" if math.isnan(test["roc_auc"]) else f"{test['roc_auc']:.4f}"
        lines.append(
            f"| {name} | {fmt_pct(test['accuracy'])} [{fmt_pct(low)}, {fmt_pct(high)}] | "
            f"{fmt_pct(test['macro_f1'])} | {auc} | {diff_text} | {entry['train_seconds']:.0f} |")
    # per class, by label name: where a multi-class model fails hides behind the averages
    classes = list(next(iter(results.values()))["test"]["per_class"])
    lines += ["", "Test precision / recall % per class:", "",
              "| variant | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    for name, entry in results.items():
        per_class = entry["test"]["per_class"]
        lines.append(f"| {name} | " + " | ".join(
            f"{fmt_pct(per_class[c]['precision'])} / {fmt_pct(per_class[c]['recall'])}"
            for c in classes) + " |")
    if len(classes) > 2:
        lines += ["", "ROC-AUC: macro average of the one-vs-rest AUCs."]
    lines += [
        "",
        f"Language model: valid perplexity {lm['valid_perplexity']:.1f} after "
        f"{lm['tokens']:,} training tokens ({lm['epochs']} epoch(s)).",
        f"Data: train {dataset['train']:,}, valid {dataset['valid']:,}, "
        f"unlabeled {dataset['unlabeled']:,}.",
        "Intervals: paired percentile bootstrap over the test set.",
    ]
    if capped:
        lines.append("**Quick run**: some splits were capped in params.yaml (prepare.max_*).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data/vocab")
    parser.add_argument("--models", default="models")
    parser.add_argument("--reports", default="reports")
    args = parser.parse_args()
    params: Params = load_params(args.params)
    data_dir, models_dir, reports = Path(args.data), Path(args.models), Path(args.reports)
    info = read_json(require(data_dir / "info.json", "vocabulary"))
    label_names = info["label_names"]
    runtime = setup(params.runtime)
    tracking.connect()

    test = Corpus.load(data_dir, "test")
    labels = test.labels
    indices = bootstrap_indices(len(labels), params.evaluate.bootstrap_samples,
                                params.evaluate.seed)
    lm_metrics = read_json(require(reports / "pretrain.json", "language-model metrics"))

    probs, results, sources = {}, {}, {}
    for variant in VARIANTS:
        model, blob = load_checkpoint(models_dir / f"{variant}.pt", vocab_size=info["vocab_size"])
        model.to(runtime.device)
        started = time.perf_counter()
        probs[variant] = predict_proba(model, test, 256, blob["max_len"], runtime.device, runtime)
        inference_seconds = time.perf_counter() - started
        train_summary = read_json(require(reports / "train" / f"{variant}.json",
                                          f"{variant} training summary"))
        sources[variant] = train_summary["mlflow_run_id"]
        test_metrics = classification_metrics(labels, probs[variant], label_names)
        correct = probs[variant].argmax(1) == labels
        test_metrics["accuracy_ci95"] = accuracy_interval(correct, indices)
        results[variant] = {"test": test_metrics, "train_seconds": train_summary["train_seconds"],
                            "valid_accuracy": train_summary["valid_accuracy"],
                            "inference_seconds": inference_seconds,
                            "train_examples": train_summary["train_examples"]}
        print(f"[evaluate] {variant}: accuracy {test_metrics['accuracy']:.4f} "
              f"(inference {inference_seconds:.1f} s)")

    baseline_correct = probs[BASELINE].argmax(1) == labels
    for variant in VARIANTS:
        if variant == BASELINE:
            continue
        correct = probs[variant].argmax(1) == labels
        results[variant]["vs_baseline"] = {
            "baseline": BASELINE,
            "accuracy_diff": float(correct.mean() - baseline_correct.mean()),
            "ci95": difference_interval(correct, baseline_correct, indices),
        }

    counts = {split: stats["documents"] for split, stats in info["splits"].items()}
    dataset = {"name": info["dataset"], **counts}
    metrics = {
        "lm": {"valid_perplexity": lm_metrics["valid_perplexity"], "epochs": lm_metrics["epochs"],
               "tokens": lm_metrics["tokens"]},
        "classifiers": results,
        "dataset": dataset,
    }
    capped = any(getattr(params.prepare, k) is not None
                 for k in ("max_train", "max_unlabeled", "max_test"))

    plot_dir = reports / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    roc = {}
    for variant in VARIANTS:
        fpr, tpr = roc_points(labels, probs[variant])
        roc[variant] = (fpr, tpr, results[variant]["test"]["roc_auc"])
        with atomic_path(plot_dir / f"roc_{variant}.csv") as tmp:
            pd.DataFrame({"fpr": fpr, "tpr": tpr}).round(6).to_csv(tmp, index=False)
        names = np.asarray(label_names)
        with atomic_path(plot_dir / f"predictions_{variant}.csv") as tmp:
            pd.DataFrame({"actual": names[labels], "predicted": names[probs[variant].argmax(1)]}
                         ).to_csv(tmp, index=False)
    curves = {v: pd.read_csv(reports / "curves" / f"{v}.csv") for v in VARIANTS}
    lm_curve_path = reports / "curves" / "pretrain.csv"
    lm_curve = pd.read_csv(lm_curve_path) if lm_curve_path.exists() else None
    plots.training_curves(curves, lm_curve, plot_dir / "training_curves.png")
    plots.roc_curves(roc, plot_dir / "roc.png")
    plots.confusion_matrices({v: results[v]["test"]["confusion_matrix"] for v in VARIANTS},
                             label_names, plot_dir / "confusion.png")
    plots.accuracy_comparison({v: results[v]["test"] for v in VARIANTS},
                              plot_dir / "accuracy.png")

    write_json(reports / "metrics.json", metrics)
    table = comparison_table(results, dataset, lm_metrics, capped)
    with atomic_path(reports / "comparison.md") as tmp:
        tmp.write_text(table, encoding="utf-8")
    print("\n" + table)

    with tracking.stage_run(params, "evaluate", "evaluate", ("data", "evaluate")):
        import mlflow
        from mlflow import MlflowClient

        client = MlflowClient()
        for variant in VARIANTS:
            test_metrics = results[variant]["test"]
            flat = {"test_accuracy": test_metrics["accuracy"],
                    "test_macro_f1": test_metrics["macro_f1"],
                    "test_roc_auc": test_metrics["roc_auc"],
                    "test_accuracy_ci95_low": test_metrics["accuracy_ci95"][0],
                    "test_accuracy_ci95_high": test_metrics["accuracy_ci95"][1],
                    "test_inference_seconds": results[variant]["inference_seconds"]}
            flat = {k: v for k, v in flat.items() if not math.isnan(v)}
            # the same metric names on every classifier's own run: comparable column by column
            for key, value in flat.items():
                client.log_metric(sources[variant], key, value)
            mlflow.log_metrics({f"{variant}.{k}": v for k, v in flat.items()})
            mlflow.set_tag(f"source_run.{variant}", sources[variant])
        mlflow.log_artifact(str(reports / "metrics.json"))
        mlflow.log_artifact(str(reports / "comparison.md"))
        for png in sorted(plot_dir.glob("*.png")):
            mlflow.log_artifact(str(png), artifact_path="plots")
        from pipeline.registry import register_best  # imports mlflow.pyfunc: only here

        register_best(params, sources, {v: results[v]["test"]["accuracy"] for v in VARIANTS},
                      test_set=f"{dataset['name']}:{dataset['test']}")

    timings = read_timings()
    if timings:
        print(timing_summary(timings))


if __name__ == "__main__":
    run_stage("evaluate", main)
