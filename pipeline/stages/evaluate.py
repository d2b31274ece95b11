"""Stage 7 — evaluate every classifier on the same test set and compare them.

With ``evaluate.hybrid_with`` (default nb_logreg) it also reports rnn_pretrained averaged
with that n-gram baseline (``rnn_pretrained_with_nb_logreg``: mean class probabilities).
Writes reports/metrics.json (the contract read by CI and benchmarks),
reports/comparison.md, DVC plot data under reports/plots/ and PNG plots.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import plots, tracking
from pipeline.artifacts import LM_REPORT_KEYS, TRAIN_SUMMARY_KEYS, VOCAB_INFO_KEYS
from pipeline.batching import Corpus
from pipeline.config import (
    EVALUATED,
    HYBRID_RNN,
    LANGUAGE_MODEL_OF,
    VARIANTS,
    Params,
    load_params,
)
from pipeline.errors import PipelineError, run_stage
from pipeline.inference import saved_classifier_proba
from pipeline.io import atomic_outputs, atomic_path, read_input, read_json, require, write_json
from pipeline.metrics import (
    accuracy_interval,
    bootstrap_indices,
    classification_metrics,
    difference_interval,
    roc_points,
)
from pipeline.runtime import Runtime, setup
from pipeline.timing import read_timings
from pipeline.timing import summary as timing_summary

BASELINE = "bag_of_embeddings"
# every result is also compared with the strongest cheap bag-of-words baseline measured
# (NB-weighted n-grams: above TF-IDF with all labels and with 1,000; README)
STRONG_BASELINE = "nb_logreg"


def fmt_pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f}"


def comparison_table(results: dict, dataset: dict, lm: dict, capped: bool) -> str:
    lines = [
        f"# Comparison on {dataset['name']} (test: {dataset['test']:,} examples)",
        "",
        *results_table(results),
    ]
    lines += [
        "",
        *averaged_lines(results),
        f"Language model: valid perplexity {lm['valid_perplexity']:.1f} after "
        f"{lm['tokens']:,} training tokens ({lm['epochs']} epoch(s)).",
        f"Data: train {dataset['train']:,}, valid {dataset['valid']:,}, "
        f"unlabeled {dataset['unlabeled']:,}.",
        "Intervals: paired percentile bootstrap over the test set.",
    ]
    if capped:
        lines.append("**Quick run**: some splits were capped in params.yaml (prepare.max_*).")
    return "\n".join(lines) + "\n"


def results_table(results: dict) -> list[str]:
    """Markdown rows: accuracy with CI, F1, AUC, difference vs the baseline, cost; per class."""
    lines = [
        "| variant | test accuracy % [95% CI] | macro-F1 % | ROC-AUC | "
        f"Δ accuracy vs {BASELINE} (points) [95% CI] | Δ vs {STRONG_BASELINE} [95% CI] | "
        "train time (s) | with its LM(s) (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results.items():
        test = entry["test"]
        low, high = test["accuracy_ci95"]
        auc = "n/a" if math.isnan(test["roc_auc"]) else f"{test['roc_auc']:.4f}"
        lines.append(
            f"| {name} | {fmt_pct(test['accuracy'])} [{fmt_pct(low)}, {fmt_pct(high)}] | "
            f"{fmt_pct(test['macro_f1'])} | {auc} | {difference_text(entry.get('vs_baseline'))} | "
            f"{difference_text(entry.get('vs_' + STRONG_BASELINE))} | "
            f"{entry['train_seconds']:.0f} | {entry['total_train_seconds']:.0f} |")
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
    return lines


def difference_text(diff: dict | None) -> str:
    """A difference entry as "+1.23 [+0.80, +1.66]" (points), "—" when there is none."""
    if diff is None:
        return "—"
    return (f"{100 * diff['accuracy_diff']:+.2f} "
            f"[{100 * diff['ci95'][0]:+.2f}, {100 * diff['ci95'][1]:+.2f}]")


def lm_summary(lm: dict) -> dict:
    return {"valid_perplexity": lm["valid_perplexity"], "epochs": lm["epochs"],
            "tokens": lm["tokens"]}


def evaluate_model(variant: str, models_dir: Path, reports: Path, test: Corpus,
                   indices: np.ndarray, info: dict, runtime: Runtime
                   ) -> tuple[np.ndarray, dict, str]:
    """Test probabilities, the result entry and the training run id of one classifier;
    ``info``: data/vocab/info.json (class names; the vocabulary the checkpoint must match)."""
    probs, inference_seconds = saved_classifier_proba(variant, models_dir, test, info,
                                                      runtime)
    summary = read_json(require(reports / "train" / f"{variant}.json",
                                f"{variant} training summary"), TRAIN_SUMMARY_KEYS)
    test_metrics = classification_metrics(test.labels, probs, info["label_names"])
    test_metrics["accuracy_ci95"] = accuracy_interval(probs.argmax(1) == test.labels, indices)
    print(f"[evaluate] {variant}: accuracy {test_metrics['accuracy']:.4f} "
          f"(inference {inference_seconds:.1f} s)")
    return probs, {"test": test_metrics, "train_seconds": summary["train_seconds"],
                   "valid_accuracy": summary["valid_accuracy"],
                   "inference_seconds": inference_seconds,
                   "train_examples": summary["train_examples"]}, summary["mlflow_run_id"]


def add_average(name: str, parts: tuple[str, ...], probs: dict[str, np.ndarray],
                results: dict, labels: np.ndarray, label_names: list[str],
                indices: np.ndarray) -> None:
    """Adds the result ``name``: the mean class probabilities of ``parts`` (already scored).
    Its ``members`` (what its cost counts) are the parts' own members."""
    probs[name] = np.mean([probs[part] for part in parts], axis=0)
    test_metrics = classification_metrics(labels, probs[name], label_names)
    test_metrics["accuracy_ci95"] = accuracy_interval(probs[name].argmax(1) == labels, indices)
    results[name] = {
        "test": test_metrics,
        "averaged": list(parts),
        "members": [m for part in parts for m in results[part].get("members", [part])],
        "train_seconds": sum(results[part]["train_seconds"] for part in parts),
        "inference_seconds": sum(results[part]["inference_seconds"] for part in parts),
        "train_examples": results[parts[0]]["train_examples"]}
    print(f"[{name}] mean of {' + '.join(parts)}: accuracy {test_metrics['accuracy']:.4f}")


def averaged_lines(results: dict) -> list[str]:
    """A sentence per averaged result: what it averages."""
    return [f"{name}: mean class probabilities of {' + '.join(entry['averaged'])} "
            "(no training of its own)." for name, entry in results.items() if "averaged" in entry]


def hybrid_name(rnn: str, ngram: str) -> str:
    """An RNN averaged with an n-gram baseline (params.yaml evaluate.hybrid_with)."""
    return f"{rnn}_with_{ngram}"


PROBABILITIES = "test_probabilities.parquet"


def write_probabilities(path: Path, labels: np.ndarray, label_names: list[str],
                        probs: dict[str, np.ndarray]) -> None:
    """Every classifier's test-set class probabilities, one row per test document in
    order: ``label`` (the true class id), then ``<variant>.<class name>`` columns."""
    columns: dict[str, np.ndarray] = {"label": labels}
    for variant, variant_probs in probs.items():
        for k, name in enumerate(label_names):
            columns[f"{variant}.{name}"] = variant_probs[:, k]
    with atomic_path(path) as tmp:
        pd.DataFrame(columns).to_parquet(tmp, index=False)


def read_probabilities(path: Path, variants: tuple[str, ...], label_names: list[str],
                       labels: np.ndarray) -> dict[str, np.ndarray]:
    """What :func:`write_probabilities` wrote, checked against the current test labels."""
    frame = read_input(path, "evaluate's test probabilities", pd.read_parquet)
    if not np.array_equal(frame["label"].to_numpy(), labels):
        raise PipelineError(f"{path} was written for another test set: rerun evaluate "
                            "(dvc repro)")
    try:
        return {v: frame[[f"{v}.{name}" for name in label_names]].to_numpy() for v in variants}
    except KeyError as exc:
        raise PipelineError(f"{path} lacks a column: {exc} (rerun evaluate)") from None


def add_costs(results: dict, lm_seconds: dict[str, float]) -> None:
    """``total_train_seconds``: a result's classifier training plus the language model(s)
    it starts from (``lm_seconds``: pretrain stage name -> its training seconds)."""
    for name, entry in results.items():
        members = entry.get("members", [name])
        lms = {LANGUAGE_MODEL_OF[m] for m in members if m in LANGUAGE_MODEL_OF}
        entry["total_train_seconds"] = (sum(results[m]["train_seconds"] for m in members)
                                        + sum(lm_seconds[lm] for lm in sorted(lms)))


def add_baseline_differences(results: dict, probs: dict, labels: np.ndarray,
                             indices: np.ndarray) -> None:
    """Each result's accuracy minus the baselines', with paired 95% intervals:
    ``vs_baseline`` (the bag of embeddings) and ``vs_nb_logreg`` (when it was scored)."""
    for baseline, key in ((BASELINE, "vs_baseline"), (STRONG_BASELINE, f"vs_{STRONG_BASELINE}")):
        if baseline not in probs:
            continue
        baseline_correct = probs[baseline].argmax(1) == labels
        for variant in results:
            if variant == baseline:
                continue
            correct = probs[variant].argmax(1) == labels
            results[variant][key] = {
                "baseline": baseline,
                "accuracy_diff": float(correct.mean() - baseline_correct.mean()),
                "ci95": difference_interval(correct, baseline_correct, indices),
            }


def cost_frame(results: dict) -> pd.DataFrame:
    return pd.DataFrame([{"variant": v, "total_train_seconds": e["total_train_seconds"],
                          "accuracy": e["test"]["accuracy"],
                          "ci_low": e["test"]["accuracy_ci95"][0],
                          "ci_high": e["test"]["accuracy_ci95"][1]} for v, e in results.items()])


def log_test_metrics(results: dict, sources: dict[str, str], stage: str) -> None:
    """Inside ``stage``'s MLflow run: every result's test metrics, also on its own training
    run."""
    import mlflow

    client = mlflow.MlflowClient()
    for variant, entry in results.items():
        test_metrics = entry["test"]
        flat = {"test_accuracy": test_metrics["accuracy"],
                "test_macro_f1": test_metrics["macro_f1"],
                "test_roc_auc": test_metrics["roc_auc"],
                "test_accuracy_ci95_low": test_metrics["accuracy_ci95"][0],
                "test_accuracy_ci95_high": test_metrics["accuracy_ci95"][1],
                "test_inference_seconds": entry["inference_seconds"]}
        flat = {k: v for k, v in flat.items() if not math.isnan(v)}
        mlflow.log_metrics({f"{variant}.{k}": v for k, v in flat.items()})
        if variant not in sources:
            continue  # an ensemble: no training run of its own
        if not tracking.run_in_store(client, sources[variant]):
            # DVC kept the stage's output, trained with another store (a clone sharing this
            # DVC cache, outputs pulled from a DVC remote): nowhere to add the metrics to
            print(f"[{stage}] {variant}'s training run {sources[variant]} is not in the "
                  f"tracking store {mlflow.get_tracking_uri()}: its test metrics are on the "
                  f"{stage} run only")
            continue
        # the same metric names on every classifier's own run: comparable column by column
        for key, value in flat.items():
            client.log_metric(sources[variant], key, value)
        mlflow.set_tag(f"source_run.{variant}", sources[variant])


@dataclass(frozen=True)
class Evaluation:
    """What evaluate and the ensemble stage share: settings, paths, test set, resamples."""

    params: Params
    models_dir: Path
    reports: Path
    info: dict
    runtime: Runtime
    test: Corpus
    indices: np.ndarray  # the bootstrap resamples: the same seed and size in both stages


def start_evaluation(description: str) -> Evaluation:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data/vocab")
    parser.add_argument("--models", default="models")
    parser.add_argument("--reports", default="reports")
    args = parser.parse_args()
    params: Params = load_params(args.params)
    data_dir = Path(args.data)
    info = read_json(require(data_dir / "info.json", "vocabulary"), VOCAB_INFO_KEYS)
    runtime = setup(params.runtime)
    tracking.connect()
    test = Corpus.load(data_dir, "test")
    indices = bootstrap_indices(len(test.labels), params.evaluate.bootstrap_samples,
                                params.evaluate.seed)
    return Evaluation(params, Path(args.models), Path(args.reports), info, runtime, test, indices)


def main() -> None:
    run = start_evaluation(__doc__)
    params, models_dir, reports = run.params, run.models_dir, run.reports
    info, runtime, test, indices = run.info, run.runtime, run.test, run.indices
    label_names = info["label_names"]
    labels = test.labels
    lm_metrics = read_json(require(reports / "pretrain.json", "language-model metrics"),
                           LM_REPORT_KEYS)
    # every input is read before anything is written
    curves = {v: read_input(reports / "curves" / f"{v}.csv", "training curve", pd.read_csv)
              for v in VARIANTS}
    lm_curve_path = reports / "curves" / "pretrain.csv"  # optional: plotted when present
    lm_curve = (read_input(lm_curve_path, "training curve", pd.read_csv)
                if lm_curve_path.exists() else None)

    probs, results, sources = {}, {}, {}
    for variant in EVALUATED:
        probs[variant], results[variant], sources[variant] = evaluate_model(
            variant, models_dir, reports, test, indices, info, runtime)
    ngram = params.evaluate.hybrid_with
    if ngram:  # an RNN and an n-gram model make different mistakes (Mesnil et al., 2015)
        add_average(hybrid_name(HYBRID_RNN, ngram), (HYBRID_RNN, ngram), probs, results,
                    labels, label_names, indices)
    add_costs(results, {"pretrain": lm_metrics["train_seconds"]})
    add_baseline_differences(results, probs, labels, indices)

    counts = {split: stats["documents"] for split, stats in info["splits"].items()}
    dataset = {"name": info["dataset"], **counts}
    metrics = {
        "lm": lm_summary(lm_metrics),
        "classifiers": results,
        "dataset": dataset,
    }
    capped = any(getattr(params.prepare, k) is not None
                 for k in ("max_train", "max_unlabeled", "max_test"))

    plot_dir = reports / "plots"
    cost_plot = reports / "accuracy_vs_train_time.png"
    names = np.asarray(label_names)
    roc = {}
    table = comparison_table(results, dataset, lm_metrics, capped)
    # every output appears together, or none does (the plots folder whole)
    with atomic_outputs(plot_dir, cost_plot, reports / PROBABILITIES, reports / "metrics.json",
                        reports / "comparison.md") as (staging, cost_tmp, probs_tmp,
                                                        metrics_tmp, table_tmp):
        staging.mkdir()
        for variant in results:
            fpr, tpr = roc_points(labels, probs[variant])
            roc[variant] = (fpr, tpr, results[variant]["test"]["roc_auc"])
            pd.DataFrame({"fpr": fpr, "tpr": tpr}).round(6).to_csv(
                staging / f"roc_{variant}.csv", index=False)
            pd.DataFrame({"actual": names[labels], "predicted": names[probs[variant].argmax(1)]}
                         ).to_csv(staging / f"predictions_{variant}.csv", index=False)
        plots.training_curves(curves, lm_curve, staging / "training_curves.png")
        plots.roc_curves(roc, staging / "roc.png")
        plots.confusion_matrices({v: results[v]["test"]["confusion_matrix"] for v in results},
                                 label_names, staging / "confusion.png")
        plots.accuracy_comparison({v: results[v]["test"] for v in results},
                                  staging / "accuracy.png")
        # not under plots/ (a deterministic output): its x axis is measured time
        plots.accuracy_vs_cost(cost_frame(results), cost_tmp)
        write_probabilities(probs_tmp, labels, label_names, probs)
        write_json(metrics_tmp, metrics)
        table_tmp.write_text(table, encoding="utf-8")
    print("\n" + table)

    with tracking.stage_run(params, "evaluate", "evaluate", ("data", "evaluate")):
        import mlflow

        log_test_metrics(results, sources, "evaluate")
        mlflow.log_artifact(str(reports / "metrics.json"))
        mlflow.log_artifact(str(reports / "comparison.md"))
        for png in [*sorted(plot_dir.glob("*.png")), cost_plot]:
            mlflow.log_artifact(str(png), artifact_path="plots")
        from pipeline.registry import register_best  # imports mlflow.pyfunc: only here

        # the PyTorch classifiers only: they are the ones served as MLflow pyfunc models
        register_best(params, sources, {v: results[v]["test"]["accuracy"] for v in VARIANTS},
                      test_set=f"{dataset['name']}:{dataset['test']}")

    timings = read_timings()
    if timings:
        print(timing_summary(timings))


if __name__ == "__main__":
    run_stage("evaluate", main)
