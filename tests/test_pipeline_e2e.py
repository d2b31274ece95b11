"""End to end: `dvc repro` in a fresh git repository on a tiny IMDB-layout archive."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
import yaml

from pipeline.config import BACKWARD_VARIANT, ENSEMBLES, EVALUATED, HYBRID_RNN, VARIANTS
from pipeline.stages.evaluate import hybrid_name
from pipeline.text import Vocab
from tests.conftest import TinyRun, copy_project, ran_stages, run, sha256, stage

pytestmark = pytest.mark.slow

HYBRID = hybrid_name(HYBRID_RNN, "nb_logreg")  # params.yaml evaluate.hybrid_with

STAGES = ["fetch", "prepare", "tokenize", "vocab", "pretrain", "train_rnn_pretrained",
          "train_rnn_scratch", "train_bag_of_embeddings", "train_bag_of_embeddings_lm",
          "train_ngrams@tfidf_logreg", "train_ngrams@nb_logreg", "evaluate"]


def check_contract(metrics: dict) -> None:
    lm = metrics["lm"]
    assert isinstance(lm["valid_perplexity"], float) and lm["valid_perplexity"] > 1
    assert isinstance(lm["epochs"], int) and isinstance(lm["tokens"], int) and lm["tokens"] > 0
    assert set(metrics["classifiers"]) == {*EVALUATED, HYBRID}
    for entry in metrics["classifiers"].values():
        test = entry["test"]
        for key in ("accuracy", "macro_f1", "roc_auc"):
            assert isinstance(test[key], float) and 0.0 <= test[key] <= 1.0
        low, high = test["accuracy_ci95"]
        assert low <= test["accuracy"] <= high
        assert isinstance(entry["train_seconds"], float)
    dataset = metrics["dataset"]
    assert dataset["name"] == "imdb"
    assert dataset == {"name": "imdb", "train": 32, "valid": 8, "test": 20, "unlabeled": 30}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_run: TinyRun) -> Path:
    assert ran_stages(tiny_run.output) == STAGES
    return copy_project(tiny_run.root, tmp_path_factory.mktemp("e2e") / "repo")


def test_outputs_and_metrics_contract(project: Path) -> None:
    for path in ["data/raw/aclImdb_v1.tar.gz", "data/prepared/train.parquet",
                 "data/tokens/test.parquet", "data/vocab/vocab.json", "data/vocab/test_ids.npy",
                 "models/lm.pt", *[f"models/{v}.pt" for v in EVALUATED],
                 "reports/comparison.md", "reports/plots/roc.png",
                 "reports/plots/confusion.png", "reports/plots/training_curves.png"]:
        assert (project / path).exists(), path
    check_contract(json.loads((project / "reports/metrics.json").read_text()))
    table = (project / "reports/comparison.md").read_text()
    for variant in (*EVALUATED, HYBRID):
        assert f"| {variant} |" in table
    plots = run(["dvc", "plots", "show", "-o", "plots_html"], cwd=project)
    assert (project / "plots_html" / "index.html").exists(), plots.stdout
    # every checkpoint names the vocabulary it reads, the one the vocab stage wrote
    itos = json.loads((project / "data/vocab/vocab.json").read_text())["itos"]
    fingerprint = json.loads((project / "data/vocab/info.json").read_text())["vocab_sha256"]
    assert fingerprint == Vocab(tuple(itos)).sha256
    for name in ["lm", *EVALUATED]:
        blob = torch.load(project / "models" / f"{name}.pt", weights_only=True)
        assert blob["vocab_sha256"] == fingerprint, name


def test_hybrid_is_the_mean_of_the_rnn_and_the_ngram_model(project: Path) -> None:
    """evaluate.hybrid_with: rnn_pretrained averaged with nb_logreg, from the probabilities
    evaluate stored; its cost counts both classifiers and the language model."""
    import numpy as np

    metrics = json.loads((project / "reports/metrics.json").read_text())["classifiers"]
    names = json.loads((project / "data/vocab/info.json").read_text())["label_names"]
    stored = pd.read_parquet(project / "reports/test_probabilities.parquet")

    def probs(variant: str) -> np.ndarray:
        return stored[[f"{variant}.{n}" for n in names]].to_numpy()

    mean = (probs(HYBRID_RNN) + probs("nb_logreg")) / 2
    np.testing.assert_allclose(probs(HYBRID), mean, rtol=1e-6)
    entry = metrics[HYBRID]
    assert entry["averaged"] == [HYBRID_RNN, "nb_logreg"]
    assert entry["test"]["accuracy"] == pytest.approx(
        (mean.argmax(1) == stored["label"].to_numpy()).mean())
    lm_seconds = json.loads((project / "reports/pretrain.json").read_text())["train_seconds"]
    assert entry["total_train_seconds"] == pytest.approx(
        lm_seconds + metrics[HYBRID_RNN]["train_seconds"] + metrics["nb_logreg"]["train_seconds"])
    assert entry["vs_nb_logreg"]["baseline"] == "nb_logreg"
    table = (project / "reports/comparison.md").read_text()
    assert f"{HYBRID}: mean class probabilities of {HYBRID_RNN} + nb_logreg" in table
    assert (project / f"reports/plots/predictions_{HYBRID}.csv").exists()


def test_stage_timings_are_recorded_and_printed(tiny_run: TinyRun) -> None:
    """reports/timings.json holds each stage's own time, its whole process's time (start-up
    and imports included) and peak memory; evaluate prints those of the stages before it."""
    timings = json.loads((tiny_run.root / "reports/timings.json").read_text())
    assert set(timings) == set(STAGES)
    for name, entry in timings.items():
        assert entry["seconds"] > 0, name
        assert entry["process_seconds"] > entry["seconds"], name  # imports precede main()
        assert entry["peak_rss_mb"] > 0, name
    lines = [line for line in tiny_run.output.splitlines()
             if line.startswith("Stage wall time (s), with process start-up")]
    assert len(lines) == 1, tiny_run.output[-2000:]
    assert all(f" {name} " in lines[0] for name in STAGES[:-1])  # evaluate prints before its own
    assert lines[0].rstrip().endswith("s with start-up")


def test_mlflow_runs_are_linked(project: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("rnn-pretrain-imdb")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    stage_runs = ["pretrain", "evaluate", *[f"clf:{v}" for v in EVALUATED]]
    assert {"pipeline", *stage_runs} <= set(by_name)
    parent = by_name["pipeline"].info.run_id
    for name in stage_runs:
        run_ = by_name[name]
        assert run_.data.tags["mlflow.parentRunId"] == parent
        assert run_.data.tags["pipeline.execution_id"] == by_name["pipeline"].data.tags[
            "pipeline.execution_id"]
        assert run_.data.tags["mlflow.source.git.commit"]
    for variant in VARIANTS:
        data = by_name[f"clf:{variant}"].data
        assert {"test_accuracy", "test_macro_f1", "test_roc_auc", "valid_accuracy",
                "train_seconds"} <= set(data.metrics)
        history = client.get_metric_history(by_name[f"clf:{variant}"].info.run_id,
                                            "valid_accuracy")
        assert len(history) >= 2  # one point per epoch, plus the final value
    assert by_name["pretrain"].data.params["pretrain.bptt"] == "8"
    # the dataset, identified by the digest of the checksums fetch verified
    digests = {name: [d.dataset.digest for d in by_name[name].inputs.dataset_inputs]
               for name in stage_runs}
    assert len({tuple(d) for d in digests.values()}) == 1
    assert len(digests["pretrain"]) == 1 and len(digests["pretrain"][0]) == 16
    assert "valid_perplexity" in by_name["pretrain"].data.metrics
    assert by_name["pretrain"].data.tags["direction"] == "forward"
    # the project is a copy of the session's tiny run: its runs' artifacts are its own
    for run_ in runs:
        assert run_.info.artifact_uri.startswith(project.as_uri()), run_.info.artifact_uri
    model = client.get_logged_model(by_name["clf:rnn_pretrained"].outputs.model_outputs[0].model_id)
    assert model.artifact_location.startswith(project.as_uri())
    assert str(project) in mlflow.models.get_model_info(model.model_uri).artifact_path


def test_evaluate_with_another_tracking_store(project: Path, tmp_path: Path) -> None:
    # a clone sharing the DVC cache (or outputs pulled from a DVC remote): DVC keeps the
    # trained models, whose training runs live in another MLflow store. evaluate scores them
    # the same and names each run it could not add the test metrics to, instead of failing
    # (the registry, which needs a training run's logged model, is off here)
    copy = copy_project(project, tmp_path / "copy")
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["registry"]["enabled"] = False
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    store = f"sqlite:///{tmp_path / 'other.db'}"
    result = stage("evaluate", "--data", "data/vocab", "--models", "models", "--reports",
                   "reports", cwd=copy, env={"MLFLOW_TRACKING_URI": store})
    for variant in VARIANTS:
        assert f"[evaluate] {variant}'s training run " in result.stdout
    assert "is not in the tracking store" in result.stdout
    before = json.loads((project / "reports/metrics.json").read_text())
    after = json.loads((copy / "reports/metrics.json").read_text())
    assert {v: e["test"] for v, e in after["classifiers"].items()} == {
        v: e["test"] for v, e in before["classifiers"].items()}
    mlflow.set_tracking_uri(store)
    [evaluate] = mlflow.search_runs(experiment_names=["rnn-pretrain-imdb"],
                                    filter_string="attributes.run_name = 'evaluate'",
                                    output_format="list")
    assert evaluate.data.metrics["rnn_pretrained.test_accuracy"] == after["classifiers"][
        "rnn_pretrained"]["test"]["accuracy"]


def test_second_repro_runs_nothing(project: Path) -> None:
    result = run(["dvc", "repro"], cwd=project)
    assert ran_stages(result.stdout) == []
    status = run(["dvc", "status"], cwd=project)
    assert "up to date" in status.stdout


def test_classifier_param_change_reruns_only_classifier_and_evaluate(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["classifier"]["rnn_scratch"]["lr"] = 0.005
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["dvc", "repro"], cwd=project)
    assert ran_stages(result.stdout) == ["train_rnn_scratch", "evaluate"]


def test_classifier_seed_resamples_the_labels_and_keeps_the_language_model(
        project: Path, tmp_path: Path) -> None:
    """classifier.seed repeats the classifiers on another labeled sample: every classifier
    stage is out of date, the language model is not."""
    repo = copy_project(project, tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    runtime_seed = params["runtime"]["seed"]

    def write(**classifier: object) -> None:
        params["classifier"].update(classifier)
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    write(seed=runtime_seed + 1)  # the seed alone
    out_of_date = set(json.loads(run(["dvc", "status", "--json"], cwd=repo).stdout))
    classifiers = {"train_rnn_pretrained", "train_rnn_scratch", "train_bag_of_embeddings",
                   "train_bag_of_embeddings_lm", "train_ngrams@tfidf_logreg",
                   "train_ngrams@nb_logreg"}
    assert classifiers <= out_of_date <= classifiers | {"train_direction@backward"}

    def trained_with(seed: int | None) -> str:
        write(train_examples=16, seed=seed)
        run(["dvc", "repro", "-s", "train_ngrams@nb_logreg"], cwd=repo)
        return sha256(repo / "models/nb_logreg.pt")

    # null is runtime.seed (tests/test_config.py); another seed draws another 16 reviews
    assert trained_with(None) != trained_with(runtime_seed + 1)


def test_backward_model_and_ensemble_follow_ensemble_directions(project: Path,
                                                                 tmp_path: Path) -> None:
    """With ``ensemble.directions: []`` (the tiny project's setting) the backward stages do
    not exist; adding ``backward`` runs exactly those three (params.yaml's default)."""
    import numpy as np

    from pipeline.batching import Corpus
    from pipeline.models import load_checkpoint
    from pipeline.tasks import predict_proba

    assert not (project / "models/lm_backward.pt").exists()  # off with directions: []
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ensemble"]["directions"] = ["backward"]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["dvc", "repro"], cwd=project)
    assert ran_stages(result.stdout) == ["pretrain_direction@backward",
                                         "train_direction@backward", "ensemble@backward"]
    report = json.loads((project / "reports/ensemble.json").read_text())
    assert set(report["classifiers"]) == {BACKWARD_VARIANT, *ENSEMBLES,
                                          *(hybrid_name(e, "nb_logreg") for e in ENSEMBLES)}
    assert report["lm_backward"]["valid_perplexity"] > 1
    metrics = json.loads((project / "reports/metrics.json").read_text())
    test = Corpus.load(project / "data/vocab", "test")
    for ensemble, members in ENSEMBLES.items():
        probs = []
        for member in members:
            model, blob = load_checkpoint(project / "models" / f"{member}.pt")
            probs.append(predict_proba(model, test, 8, blob["max_len"], torch.device("cpu")))
        # evaluate's stored probabilities (which the ensemble reuses) are the model's (evaluate
        # ran in the runtime's precision, bf16 where the CPU has it, in batches of 256; this
        # in fp32 in batches of 8: ~1e-5 apart here)
        names = json.loads((project / "data/vocab/info.json").read_text())["label_names"]
        stored = pd.read_parquet(project / "reports/test_probabilities.parquet")
        np.testing.assert_allclose(stored[[f"{members[0]}.{n}" for n in names]].to_numpy(),
                                   probs[0], atol=1e-3)
        entry = report["classifiers"][ensemble]
        assert entry["members"] == list(members)
        accuracy = (np.mean(probs, axis=0).argmax(1) == test.labels).mean()
        assert entry["test"]["accuracy"] == pytest.approx(accuracy)
        # its cost counts both classifiers and both language models
        lms = sum(json.loads((project / f"reports/{lm}.json").read_text())["train_seconds"]
                  for lm in ("pretrain", "pretrain_backward"))
        assert entry["total_train_seconds"] == pytest.approx(
            lms + metrics["classifiers"]["rnn_pretrained"]["train_seconds"]
            + report["classifiers"][BACKWARD_VARIANT]["train_seconds"])
        # and averaged with nb_logreg (evaluate.hybrid_with), which adds its own cost
        ngram = stored[[f"nb_logreg.{n}" for n in names]].to_numpy()
        hybrid = report["classifiers"][hybrid_name(ensemble, "nb_logreg")]
        assert hybrid["members"] == [*members, "nb_logreg"]
        hybrid_probs = (np.mean(probs, axis=0) + ngram) / 2
        assert hybrid["test"]["accuracy"] == pytest.approx(
            (hybrid_probs.argmax(1) == test.labels).mean())
        assert hybrid["total_train_seconds"] == pytest.approx(
            entry["total_train_seconds"] + metrics["classifiers"]["nb_logreg"]["train_seconds"])
    assert f"| {BACKWARD_VARIANT} |" in (project / "reports/ensemble.md").read_text()

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("rnn-pretrain-imdb")
    by_name = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert by_name["pretrain_backward"].data.tags["direction"] == "backward"
    assert "rnn_pretrained_ensemble.test_accuracy" in by_name["ensemble"].data.metrics
    assert "test_accuracy" in by_name[f"clf:{BACKWARD_VARIANT}"].data.metrics

    # a classifier refuses a language model of the other direction, and writes nothing
    refused = stage("train", "rnn_pretrained", "--lm", "models/lm_backward.pt",
                    "--out-dir", str(tmp_path), "--reports", str(tmp_path), cwd=project,
                    check=False)
    assert refused.returncode == 1
    assert "models/lm_backward.pt is a backward language model" in refused.stderr
    assert not list(tmp_path.iterdir())
    assert ran_stages(run(["dvc", "repro"], cwd=project).stdout) == []
