"""PNG plots for people without a browser (``dvc plots show`` needs Vega from a CDN)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fixed creation date keeps the PNG bytes identical from run to run
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def training_curves(curves: dict[str, pd.DataFrame], lm_curve: pd.DataFrame | None,
                    path: Path) -> None:
    columns = 2 if lm_curve is not None else 1
    fig, axes = plt.subplots(1, columns, figsize=(6 * columns, 4), squeeze=False)
    ax = axes[0][0]
    for name, frame in curves.items():
        ax.plot(frame["epoch"], frame["valid_accuracy"], marker="o", label=name)
    ax.set(xlabel="epoch", ylabel="valid accuracy", title="Classifiers")
    ax.grid(alpha=0.3)
    ax.legend()
    if lm_curve is not None:
        ax = axes[0][1]
        ax.plot(lm_curve["epoch"], lm_curve["valid_perplexity"], marker="o", color="tab:purple")
        ax.set(xlabel="epoch", ylabel="valid perplexity", title="Language model")
        ax.grid(alpha=0.3)
    _save(fig, path)


def roc_curves(points: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (fpr, tpr, auc) in points.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    ax.legend(loc="lower right")
    _save(fig, path)


def confusion_matrices(matrices: dict[str, list[list[int]]], label_names: list[str],
                       path: Path) -> None:
    fig, axes = plt.subplots(1, len(matrices), figsize=(4 * len(matrices), 3.8), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items(), strict=True):
        matrix = np.asarray(matrix)
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > matrix.max() / 2 else "black")
        ticks = range(len(label_names))
        ax.set(xticks=ticks, yticks=ticks, xticklabels=label_names, yticklabels=label_names,
               xlabel="predicted", ylabel="actual", title=name)
    _save(fig, path)


def accuracy_comparison(results: dict[str, dict], path: Path) -> None:
    names = list(results)
    acc = [results[n]["accuracy"] * 100 for n in names]
    low = [results[n]["accuracy_ci95"][0] * 100 for n in names]
    high = [results[n]["accuracy_ci95"][1] * 100 for n in names]
    fig, ax = plt.subplots(figsize=(6, 3))
    errors = [np.subtract(acc, low), np.subtract(high, acc)]
    ax.barh(names, acc, xerr=errors, color="tab:blue", alpha=0.8, capsize=4)
    ax.set(xlabel="test accuracy (%) with 95% bootstrap interval",
           xlim=(max(0.0, min(low) - 5), min(100.0, max(high) + 2)))
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def learning_curve(frame: pd.DataFrame, path: Path) -> None:
    """Test accuracy vs labeled examples (log x), one line per variant, 95% CI band."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant, rows in frame.groupby("variant"):
        rows = rows.sort_values("train_examples")
        ax.plot(rows["train_examples"], 100 * rows["accuracy"], marker="o", label=variant)
        ax.fill_between(rows["train_examples"], 100 * rows["ci_low"], 100 * rows["ci_high"],
                        alpha=0.2)
    ax.set_xscale("log")
    ax.set(xlabel="labeled training examples", ylabel="test accuracy %",
           title="Learning curve (95% bootstrap intervals)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    _save(fig, path)



def accuracy_vs_cost(frame: pd.DataFrame, path: Path) -> None:
    """Test accuracy vs training time (classifier + its language models), with 95% CIs.

    Rows: variant, total_train_seconds, accuracy, ci_low, ci_high, and optionally
    ``config`` (one line per variant across configurations, e.g. LM lengths).
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant, rows in frame.groupby("variant", sort=False):
        rows = rows.sort_values("total_train_seconds")
        minutes, acc = rows["total_train_seconds"] / 60, 100 * rows["accuracy"]
        errors = [acc - 100 * rows["ci_low"], 100 * rows["ci_high"] - acc]
        ax.errorbar(minutes, acc, yerr=errors, marker="o", capsize=3, label=variant)
        if "config" in rows:
            # configs that gave a variant the same result (a baseline no config changed) share
            # one label: printed one on another they were unreadable
            labels: dict[tuple[float, float], list[str]] = {}
            for x, y, config in zip(minutes, acc, rows["config"], strict=True):
                near = next((key for key in labels  # within a minute, the same accuracy
                             if abs(key[0] - x) < 1 and abs(key[1] - y) < 0.005), (x, y))
                labels.setdefault(near, []).append(str(config))
            for (x, y), configs in labels.items():
                ax.annotate(", ".join(configs), (x, y), textcoords="offset points",
                            xytext=(4, -10), fontsize=7)
    ax.set(xlabel="training time, classifier + its language model(s) (minutes)",
           ylabel="test accuracy %", title="Accuracy vs training cost (95% bootstrap intervals)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
