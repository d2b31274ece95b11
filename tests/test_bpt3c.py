"""BPT3C end to end: `classifier.bpt3c` retrains the classifiers on whole reviews, read in
chunks, and evaluate, serving and `dvc status` follow (the model side: test_models.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.config import VARIANTS
from pipeline.serving import TextClassifier
from tests.conftest import TinyRun, copy_project, ran_stages, run

pytestmark = pytest.mark.slow

GRAD_LEN = 12  # tokens back-propagated through; the tiny reviews are several times longer


def test_bpt3c_retrains_the_classifiers_on_whole_reviews(tmp_path: Path,
                                                         tiny_run: TinyRun) -> None:
    root = copy_project(tiny_run.root, tmp_path / "repo")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["classifier"].update(bpt3c=True, max_len=GRAD_LEN, bptt=5)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}

    output = run(["dvc", "repro"], cwd=root, env=env).stdout
    ran = ran_stages(output)
    assert "pretrain" not in ran  # the language model does not depend on it
    assert {f"train_{v}" for v in VARIANTS} | {"evaluate"} <= set(ran)

    lengths = np.diff(np.load(root / "data/vocab/train_offsets.npy"))
    assert np.median(lengths) > 3 * GRAD_LEN  # so the chunked path really ran
    for variant in ("rnn_pretrained", "rnn_scratch"):
        blob = torch.load(root / f"models/{variant}.pt", weights_only=True)
        assert blob["max_len"] is None  # read whole at inference too
        assert (blob["config"]["grad_len"], blob["config"]["bptt"]) == (GRAD_LEN, 5)
    assert torch.load(root / "models/bag_of_embeddings.pt", weights_only=True)["max_len"] is None

    metrics = json.loads((root / "reports/metrics.json").read_text())
    for variant in VARIANTS:
        assert 0.0 <= metrics["classifiers"][variant]["test"]["accuracy"] <= 1.0

    classifier = TextClassifier.from_files(root / "models/rnn_pretrained.pt",
                                           root / "data/vocab/vocab.json", lowercase=True)
    assert classifier.max_len is None and classifier.model.grad_len == GRAD_LEN
    long_review = " ".join(["The acting was wonderful and the story moved me."] * 20)
    predictions = classifier.predict([long_review, "Dull."])
    assert len(predictions) == 2 and predictions["probability"].between(0, 1).all()
    assert "up to date" in run(["dvc", "status"], cwd=root).stdout

