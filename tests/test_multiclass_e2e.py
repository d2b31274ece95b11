"""Beyond IMDB: a 3-class `dvc repro` on your own CSV files, and SST-2 from the data mirror."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.batching import lm_stream
from pipeline.config import EVALUATED, HYBRID_RNN
from pipeline.stages.evaluate import hybrid_name
from pipeline.stages.pretrain import training_corpora
from tests.conftest import REPO, SHARED_DATA, make_project, run, sha256, stage, tiny_params

# Short texts written for this test, three topics; each list is split train / valid / test.
TEXTS = {
    "cooking": [
        "Stir the onions slowly until they turn golden and sweet.",
        "Knead the dough for ten minutes, then let it rise.",
        "Add a pinch of salt to the boiling pasta water.",
        "Roast the carrots with honey and a little thyme.",
        "Whisk the eggs with sugar before folding in the flour.",
        "Simmer the tomato sauce for an hour with garlic.",
        "Slice the bread thin and toast it in butter.",
        "Season the soup with pepper and fresh parsley.",
        "Bake the cake until a knife comes out clean.",
        "Chop the herbs finely and sprinkle them on the fish.",
        "Melt the chocolate gently over a pan of warm water.",
        "Grate the cheese over the hot potatoes and serve.",
        "Marinate the chicken in lemon juice overnight.",
        "Fry the mushrooms in oil until the pan is dry.",
        "Peel the apples and bake them with cinnamon.",
    ],
    "sport": [
        "The striker scored twice in the second half.",
        "Our team won the match after extra time.",
        "She ran the marathon in under three hours.",
        "The goalkeeper saved a penalty in the last minute.",
        "He trains at the stadium every morning before work.",
        "The coach changed the whole defence at half time.",
        "Fans cheered as the runner crossed the finish line.",
        "The tennis final went to a fifth set.",
        "The cyclist attacked on the final climb and won the stage.",
        "Both teams played hard but the match ended in a draw.",
        "The swimmer broke the national record in the relay.",
        "The referee showed a red card to the captain.",
        "The boxer won the title fight on points.",
        "The league season starts with a derby match.",
        "He scored the winning basket as the clock ran out.",
    ],
    "weather": [
        "Heavy rain is expected across the north tonight.",
        "The morning will be cold with frost on the roads.",
        "A strong wind will blow from the west all day.",
        "Sunny spells and warm temperatures this afternoon.",
        "Snow is likely on the hills by the weekend.",
        "Thunderstorms may bring hail in the evening.",
        "Fog will clear slowly to leave a bright, dry day.",
        "Showers will move east with a cool breeze.",
        "Temperatures will drop below freezing after dark.",
        "A humid night with clouds and light drizzle.",
        "The heat wave continues with clear blue skies.",
        "Gales and rain will hit the coast on Tuesday.",
        "A mild and cloudy day with a chance of rain.",
        "Frost and ice will make the morning roads slippery.",
        "Bright sunshine after a wet and windy night.",
    ],
}
SPLITS = {"train": slice(0, 8), "valid": slice(8, 11), "test": slice(11, 15)}
LABELS = sorted(TEXTS)


def write_files(folder: Path) -> dict[str, str]:
    """train.csv, valid.csv and test.csv with columns `body` and `topic`; data.files settings."""
    folder.mkdir(parents=True, exist_ok=True)
    settings: dict[str, object] = {"text_column": "body", "label_column": "topic"}
    for split, part in SPLITS.items():
        rows = [{"topic": topic, "body": text, "source": "written for the test"}
                for topic, texts in TEXTS.items() for text in texts[part]]
        pd.DataFrame(rows).to_csv(folder / f"{split}.csv", index=False)
        settings[split] = str(folder / f"{split}.csv")
    return settings


def count(split: str) -> int:
    part = SPLITS[split]
    return sum(len(texts[part]) for texts in TEXTS.values())


# ---------------------------------------------------------------- dvc repro, 3 classes


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_archive: Path) -> Path:
    files = write_files(tmp_path_factory.mktemp("own") / "topics")
    params = tiny_params(tiny_archive, data={"dataset": "files", "files": files})
    root = make_project(tmp_path_factory.mktemp("multiclass") / "repo", params)
    result = run(["dvc", "repro"], cwd=root,
                 env={"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"})  # its own
    assert "Running stage 'evaluate'" in result.stdout
    return root


@pytest.mark.slow
def test_three_class_metrics_and_reports(project: Path) -> None:
    info = json.loads((project / "data/prepared/info.json").read_text())
    assert info["dataset"] == "files"
    assert info["label_names"] == LABELS
    assert info["counts"] == {"train": count("train"), "valid": count("valid"),
                              "test": count("test"), "unlabeled": 0}
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["dataset"]["name"] == "files"
    # and rnn_pretrained averaged with nb_logreg (params.yaml evaluate.hybrid_with)
    assert set(metrics["classifiers"]) == {*EVALUATED, hybrid_name(HYBRID_RNN, "nb_logreg")}
    for variant, entry in metrics["classifiers"].items():
        test = entry["test"]
        matrix = np.asarray(test["confusion_matrix"])
        assert matrix.shape == (3, 3), variant
        assert matrix.sum(axis=1).tolist() == [count("test") // 3] * 3  # rows: actual class
        assert 0.0 <= test["macro_f1"] <= 1.0
        assert 0.0 <= test["roc_auc"] <= 1.0  # one-vs-rest, macro: every class is in test
        assert list(test["per_class"]) == LABELS
        assert all(test["per_class"][name]["support"] == count("test") // 3 for name in LABELS)
        predictions = pd.read_csv(project / f"reports/plots/predictions_{variant}.csv")
        assert sorted(set(predictions["actual"])) == LABELS
        assert set(predictions["predicted"]) <= set(LABELS)
    table = (project / "reports/comparison.md").read_text()
    assert "macro-F1" in table and "Comparison on files" in table
    assert "| variant | cooking | sport | weather |" in table  # per class, by name
    assert "macro average of the one-vs-rest AUCs" in table
    assert (project / "reports/plots/confusion.png").stat().st_size > 0


@pytest.mark.slow
def test_pretraining_reads_train_text_when_there_is_no_unlabeled_split(project: Path) -> None:
    vocab = project / "data/vocab"
    train, unlabeled = training_corpora(vocab, None)
    assert len(train) == count("train") and len(unlabeled) == 0
    assert len(lm_stream([train, unlabeled])) == len(train.ids) + len(train)  # + one <eos> each
    capped = training_corpora(vocab, 5)
    assert [len(c) for c in capped] == [5, 0]
    lm = json.loads((project / "reports/pretrain.json").read_text())
    assert lm["stream_tokens"] == len(train.ids) + len(train)


@pytest.mark.slow
def test_own_experiment_and_fetch_reruns_on_files_settings(project: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    assert client.get_experiment_by_name("rnn-pretrain-imdb") is None
    experiment = client.get_experiment_by_name("rnn-pretrain-files")
    names = {r.info.run_name for r in client.search_runs([experiment.experiment_id])}
    assert {"pretrain", "evaluate", *[f"clf:{v}" for v in EVALUATED]} <= names

    source = json.loads((project / "data/raw/source.json").read_text())
    assert source["counts"]["test/weather"] == count("test") // 3
    params_path = project / "params.yaml"
    original = params_path.read_text()
    for name, entry in source["files"].items():
        assert entry["checksum"] == f"sha256:{sha256(Path(entry['origin']))}", name
    params = yaml.safe_load(original)
    params["data"]["files"]["valid"] = None  # hold out from train instead
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = run(["dvc", "status", "fetch"], cwd=project).stdout
        assert "data.files" in status, status
    finally:
        params_path.write_text(original)
    assert "up to date" in run(["dvc", "status"], cwd=project).stdout


# ---------------------------------------------------------------- SST-2, real mirror

SST2_MIRROR = SHARED_DATA / "sentences"


@pytest.mark.skipif(not (SST2_MIRROR / "stsa.binary.train").exists(),
                    reason=f"no SST-2 mirror at {SST2_MIRROR} (see ../shared/README.md)")
def test_fetch_and_prepare_real_sst2(tmp_path: Path, pipeline_env: dict) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text().replace(
        "../shared/data/sentences", str(SST2_MIRROR)))
    params["data"]["dataset"] = "sst2"
    assert params["fetch"]["expect_full_size"] is True
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage("fetch", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env)
    source = json.loads((tmp_path / "data/raw/source.json").read_text())
    assert source["dataset"] == "sst2"
    assert source["counts"] == {"train": 6920, "dev": 872, "test": 1821}
    for name, entry in source["files"].items():
        assert entry["origin"] == str(SST2_MIRROR / name)
        assert entry["checksum"] == f"sha256:{sha256(SST2_MIRROR / name)}"
    stage("prepare", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env)
    info = json.loads((tmp_path / "data/prepared/info.json").read_text())
    assert info["counts"] == {"train": 6920, "valid": 872, "test": 1821, "unlabeled": 0}
    assert info["label_names"] == ["negative", "positive"]
    test = pd.read_parquet(tmp_path / "data/prepared/test.parquet")
    assert set(test["label"]) == {0, 1}
    assert test["id"].is_unique
