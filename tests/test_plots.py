"""PNG plots: what a reader sees on them."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from pipeline import plots


def test_cost_plot_labels_a_point_several_configs_share_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An n-gram baseline no config changes has the same accuracy and (within seconds) the
    same time in every config: one label naming them all, not labels printed on each
    other; points that differ keep their own."""
    frame = pd.DataFrame({
        "variant": ["nb_logreg", "nb_logreg", "rnn_pretrained", "rnn_pretrained"],
        "config": ["main run", "long_cpu", "main run", "long_cpu"],
        "total_train_seconds": [28.0, 30.0, 1434.0, 1935.0],
        "accuracy": [0.9172, 0.9172, 0.9115, 0.92],
        "ci_low": [0.914, 0.914, 0.908, 0.917], "ci_high": [0.921, 0.921, 0.915, 0.923]})
    shown: list[str] = []

    def keep_labels(fig: plt.Figure, path: Path) -> None:
        shown.extend(text.get_text() for ax in fig.axes for text in ax.texts)
        plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep_labels)
    plots.accuracy_vs_cost(frame, tmp_path / "cost.png")
    assert sorted(shown) == ["long_cpu", "main run", "main run, long_cpu"]
