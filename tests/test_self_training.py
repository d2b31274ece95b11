"""Self-training: pseudo_label, the students (train --pseudo-labels) and their report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.batching import Corpus
from pipeline.config import load_params, with_overrides
from pipeline.errors import PipelineError
from pipeline.stages.pseudo_label import confident, pool_rows
from tests.conftest import TinyRun, copy_project, ran_stages, run, stage

STUDENTS = ["rnn_pretrained_self_trained", "bag_of_embeddings_lm_self_trained"]
HYBRID = "rnn_pretrained_self_trained_with_nb_logreg"


def test_confident_keeps_the_surest_rows_of_each_class_once() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55], [0.99, 0.01]])
    rows, labels = confident(probs, 2)
    assert rows.tolist() == [4, 0, 2, 3] and labels.tolist() == [0, 0, 1, 1]
    # more asked for than there are rows: each row is still used once
    rows, labels = confident(probs, 4)
    assert sorted(rows.tolist()) == [0, 1, 2, 3, 4]
    assert labels.tolist() == [0, 0, 0, 0, 1]


def test_pool_rows_is_a_seeded_sorted_sample_or_everything() -> None:
    assert pool_rows(5, None, 1).tolist() == [0, 1, 2, 3, 4]
    assert pool_rows(5, 9, 1).tolist() == [0, 1, 2, 3, 4]
    sample = pool_rows(100, 10, 1)
    assert len(set(sample)) == 10 and sample.tolist() == sorted(sample)
    assert sample.tolist() == pool_rows(100, 10, 1).tolist()
    assert sample.tolist() != pool_rows(100, 10, 2).tolist()


def test_concat_keeps_both_corpora_in_order() -> None:
    first = Corpus(np.arange(5), np.array([0, 2, 5]), np.array([0, 1]))
    second = Corpus(np.arange(10, 13), np.array([0, 1, 3]), np.array([1, 0], dtype=np.int32))
    both = Corpus.concat(first, second)
    assert [both.take(np.array([i])).ids.tolist() for i in range(4)] == [
        [0, 1], [2, 3, 4], [10], [11, 12]]
    assert both.labels.tolist() == [0, 1, 1, 0] and both.labels.dtype == first.labels.dtype
    with pytest.raises(PipelineError, match="two labeled"):
        Corpus.concat(first, Corpus(np.arange(2), np.array([0, 2]), None))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"self_training.teachers": ["tfidf"]}, "self_training.teachers.0"),
    ({"self_training.teachers": ["rnn_scratch", "bag_of_embeddings"]}, "at most 1"),
    ({"self_training.students": ["rnn_pretrained", "rnn_pretrained"]}, "named twice"),
    ({"self_training.students": []}, "self_training.students"),
    ({"self_training.per_class": 0}, "self_training.per_class"),
    ({"self_training.teachers": ["bag_of_embeddings_lm"],
      "classifier.rnn_pretrained.gradual_unfreezing": True,
      "classifier.rnn_pretrained.epochs": 10}, "self_training.rnn_epochs: 3 is too few"),
])
def test_bad_self_training_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        with_overrides(load_params(), overrides, "params.yaml")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_run: TinyRun) -> Path:
    """The tiny project, self-training switched on and run."""
    root = copy_project(tiny_run.root, tmp_path_factory.mktemp("self_training") / "repo")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["self_training"].update(teachers=["bag_of_embeddings_lm"], per_class=5,
                                   gold_epochs=2)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["dvc", "repro"], cwd=root,
                 env={"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"})  # its own
    assert sorted(ran_stages(result.stdout)) == sorted([
        "pseudo_label@bag_of_embeddings_lm",
        "train_self_trained@bag_of_embeddings_lm-rnn_pretrained",
        "train_self_trained@bag_of_embeddings_lm-bag_of_embeddings_lm",
        "self_training@bag_of_embeddings_lm"])
    return root


@pytest.mark.slow
def test_pseudo_labels_are_the_teachers_surest_unlabeled_reviews(project: Path) -> None:
    from pipeline.inference import saved_classifier_proba
    from pipeline.io import read_json
    from pipeline.runtime import setup

    pseudo = pd.read_parquet(project / "data/pseudo_labels.parquet")
    unlabeled = Corpus.load(project / "data/vocab", "unlabeled")
    # the stage's precision (bf16 autocast on a bf16 CPU): fp32 probabilities ordered
    # near-ties differently there (2026-12-04, an EPYC with AVX-512 BF16)
    runtime = setup(load_params(project / "params.yaml").runtime)
    probs, _ = saved_classifier_proba("bag_of_embeddings_lm", project / "models", unlabeled,
                                      read_json(project / "data/vocab/info.json"), runtime)
    expected_rows, expected_labels = confident(probs, 5)
    assert pseudo["unlabeled_row"].tolist() == expected_rows.tolist()
    assert pseudo["label"].tolist() == expected_labels.tolist()
    np.testing.assert_allclose(pseudo["probability"], probs[expected_rows, expected_labels],
                               atol=1e-3)  # the stage ran in the runtime's precision
    report = json.loads((project / "reports/pseudo_labels.json").read_text())
    assert report["count"] == 10 and report["unlabeled_read"] == len(unlabeled) == 30
    assert report["per_class"] == {"neg": 5, "pos": 5}


@pytest.mark.slow
def test_students_train_on_labeled_plus_pseudo_labeled_and_are_compared(project: Path) -> None:
    from pipeline.models import load_checkpoint
    from pipeline.tasks import predict_proba

    metrics = json.loads((project / "reports/metrics.json").read_text())["classifiers"]
    report = json.loads((project / "reports/self_training.json").read_text())
    assert report["teacher"] == "bag_of_embeddings_lm"
    # and the rnn_pretrained student averaged with nb_logreg (params.yaml evaluate.hybrid_with)
    assert sorted(report["classifiers"]) == sorted([*STUDENTS, HYBRID])
    test = Corpus.load(project / "data/vocab", "test")
    stored = pd.read_parquet(project / "reports/test_probabilities.parquet")
    lm_seconds = json.loads((project / "reports/pretrain.json").read_text())["train_seconds"]
    pseudo_seconds = json.loads((project / "reports/pseudo_labels.json").read_text())["seconds"]
    student_probs = {}
    for name in STUDENTS:
        entry = report["classifiers"][name]
        variant = name.removesuffix("_self_trained")
        summary = json.loads((project / f"reports/self_trained/train/{variant}.json").read_text())
        # the x of a learning curve stays the labeled count; the pseudo-labels are counted apart
        assert summary["train_examples"] == metrics[variant]["train_examples"] == 32
        assert summary["pseudo_labeled"] == 10 and summary["variant"] == name
        model, blob = load_checkpoint(project / f"models/self_trained/{variant}.pt")
        assert blob["variant"] == name
        # gold_epochs: then the labeled reviews alone; the model saved is the one whose
        # valid accuracy the summary reports (the student's when that step did not beat it)
        curve = pd.read_csv(project / f"reports/self_trained/curves/{variant}.csv")
        last_step = curve[curve.phase == "labeled only"]
        first_step = curve[curve.phase == "labeled + pseudo-labeled"]
        assert 1 <= len(last_step) <= 2 and len(first_step) == summary["epochs"]
        assert curve.epoch.tolist() == list(range(1, len(curve) + 1))
        gold = summary["labeled_only"]
        assert gold["valid_accuracy"] == last_step.valid_accuracy.max()
        assert gold["kept"] == (gold["valid_accuracy"] > first_step.valid_accuracy.max())
        assert summary["valid_accuracy"] == max(gold["valid_accuracy"],
                                                first_step.valid_accuracy.max())
        valid = Corpus.load(project / "data/vocab", "valid")
        valid_correct = predict_proba(model, valid, 8, blob["max_len"], torch.device("cpu")
                                      ).argmax(1) == valid.labels
        assert valid_correct.mean() == pytest.approx(summary["valid_accuracy"])
        student_probs[name] = predict_proba(model, test, 8, blob["max_len"],
                                            torch.device("cpu"))
        correct = student_probs[name].argmax(1) == test.labels
        assert entry["test"]["accuracy"] == pytest.approx(correct.mean())
        alone = stored[[f"{variant}.neg", f"{variant}.pos"]].to_numpy().argmax(1) == test.labels
        gain = entry["vs_supervised"]
        assert gain["variant"] == variant
        assert gain["accuracy_diff"] == pytest.approx(correct.mean() - alone.mean())
        assert gain["ci95"][0] <= gain["accuracy_diff"] <= gain["ci95"][1]
        assert entry["vs_baseline"]["baseline"] == "bag_of_embeddings"
        # its cost: its own training, the teacher's, the pseudo-labelling and the LM
        assert entry["total_train_seconds"] == pytest.approx(
            entry["train_seconds"] + metrics["bag_of_embeddings_lm"]["train_seconds"]
            + pseudo_seconds + lm_seconds)
    hybrid = report["classifiers"][HYBRID]
    mean = (student_probs[STUDENTS[0]] + stored[["nb_logreg.neg", "nb_logreg.pos"]].to_numpy()) / 2
    assert hybrid["test"]["accuracy"] == pytest.approx((mean.argmax(1) == test.labels).mean())
    # the student's cost and the n-gram model's (not the teacher here: counted once either way)
    assert hybrid["total_train_seconds"] == pytest.approx(
        report["classifiers"][STUDENTS[0]]["total_train_seconds"]
        + metrics["nb_logreg"]["train_seconds"])
    assert "vs_supervised" not in hybrid
    markdown = (project / "reports/self_training.md").read_text()
    assert "| rnn_pretrained_self_trained |" in markdown and "kept 10" in markdown
    assert f"| {HYBRID} |" in markdown
    assert "| rnn_scratch |" in markdown  # every classifier of the run, for comparison

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("rnn-pretrain-imdb")
    by_name = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert "pseudo_labels" in by_name["pseudo_label:bag_of_embeddings_lm"].data.metrics
    assert "test_accuracy" in by_name["clf:rnn_pretrained_self_trained"].data.metrics
    assert by_name["clf:rnn_pretrained_self_trained"].data.params[
        "self_training.rnn_epochs"] == "3"
    assert "bag_of_embeddings_lm_self_trained.test_accuracy" in by_name[
        "self_training"].data.metrics
    assert ran_stages(run(["dvc", "repro"], cwd=project).stdout) == []


@pytest.mark.slow
def test_pseudo_labels_of_other_data_and_no_unlabeled_text_are_refused(
        project: Path, tmp_path: Path) -> None:
    # pseudo-labels made from another vocabulary: the student refuses them, writes nothing
    stale = pd.read_parquet(project / "data/pseudo_labels.parquet")
    stale.attrs["vocab_sha256"] = "0" * 64
    stale.to_parquet(tmp_path / "stale.parquet", index=False)
    out = tmp_path / "out"
    refused = stage("train", "bag_of_embeddings_lm", "--pseudo-labels",
                    str(tmp_path / "stale.parquet"), "--out-dir", str(out),
                    "--reports", str(out), cwd=project, check=False)
    assert refused.returncode == 1
    assert "stale.parquet was made from other data than data/vocab" in refused.stderr
    assert not out.exists()

    # a dataset without unlabeled text
    data = shutil.copytree(project / "data/vocab", tmp_path / "vocab")
    np.save(data / "unlabeled_ids.npy", np.zeros(0, dtype=np.int32))
    np.save(data / "unlabeled_offsets.npy", np.zeros(1, dtype=np.int64))
    refused = stage("pseudo_label", "bag_of_embeddings_lm", "--data", str(data),
                    "--out", str(out / "p.parquet"), "--report", str(out / "p.json"),
                    cwd=project, check=False)
    assert refused.returncode == 1
    assert "self-training needs unlabeled text" in refused.stderr
    assert not out.exists()


@pytest.mark.slow
def test_switching_self_training_off_removes_its_stages(project: Path, tmp_path: Path) -> None:
    root = copy_project(project, tmp_path / "repo")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["self_training"]["teachers"] = []
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    listed = run(["dvc", "stage", "list"], cwd=root).stdout
    assert "pseudo_label" not in listed and "self_training" not in listed
    assert ran_stages(run(["dvc", "repro"], cwd=root).stdout) == []


@pytest.mark.slow
def test_an_ngram_baseline_can_teach(project: Path, tmp_path: Path) -> None:
    """teachers: [nb_logreg] (a scikit-learn baseline): DVC adds its stages, and the
    stage keeps the reviews that model is surest of."""
    from pipeline.ngrams import NgramLogReg

    root = copy_project(project, tmp_path / "repo")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["self_training"]["teachers"] = ["nb_logreg"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    listed = run(["dvc", "stage", "list"], cwd=root).stdout
    assert "pseudo_label@nb_logreg" in listed and "self_training@nb_logreg" in listed
    out = tmp_path / "out"
    stage("pseudo_label", "nb_logreg", "--out", str(out / "p.parquet"), "--report",
          str(out / "p.json"), cwd=root)
    info = json.loads((root / "data/vocab/info.json").read_text())
    teacher, _ = NgramLogReg.load(root / "models/nb_logreg.pt", info["vocab_sha256"])
    probs = teacher.predict_proba(Corpus.load(root / "data/vocab", "unlabeled"))
    rows, labels = confident(probs, 5)
    pseudo = pd.read_parquet(out / "p.parquet")
    assert pseudo["unlabeled_row"].tolist() == rows.tolist()
    assert pseudo["label"].tolist() == labels.tolist()
    assert json.loads((out / "p.json").read_text())["teacher"] == "nb_logreg"
