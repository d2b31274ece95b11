"""`python -m pipeline.predict` refuses what would quietly go wrong: a --params file that
is not there, a registry URI with no tracking store to resolve it, a URI with no scheme."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.predict import main as predict_main


def test_a_missing_params_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    """It used to be skipped without a word, and the text lowercased whatever the model
    was trained with."""
    monkeypatch.chdir(tmp_path)
    assert predict_main(["--params", "nope.yaml", "a fine film"]) == 1
    assert "settings file not found: " in capsys.readouterr().err


def test_a_registry_uri_needs_an_existing_store(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    """Run outside the project, it used to create an empty mlflow.db there and then say the
    registered model does not exist."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr("pipeline.tracking.main_repo_root", lambda: tmp_path)
    code = predict_main(["--model-uri", "models:/rnn-pretrain-imdb-classifier@champion", "ok"])
    assert code == 1
    assert f"no MLflow tracking store at {tmp_path / 'mlflow.db'}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no store, no lock file


def test_a_tracking_uri_without_a_scheme_is_named(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    """MLflow reads "127.0.0.1:5000" as a file store and blames its maintenance mode."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "127.0.0.1:5000")
    assert predict_main(["--model-uri", "runs:/0123/model", "ok"]) == 1
    assert ("MLFLOW_TRACKING_URI='127.0.0.1:5000' has no scheme: use http://<host>:<port>"
            in capsys.readouterr().err)


def test_an_empty_review_is_warned_about(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    """The model answers for an empty text too (its guess for no text): say so."""
    import json

    from pipeline.models import BagOfEmbeddings, save_checkpoint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"itos": ["<pad>", "<unk>", "<eos>", "fine"]}))
    model = BagOfEmbeddings(4, 8, 2, 0.0)
    save_checkpoint(tmp_path / "clf.pt", "bag_of_embeddings",
                    {"vocab_size": 4, "embedding_dim": 8, "n_classes": 2, "dropout": 0.0}, model,
                    {"label_names": ["neg", "pos"], "max_len": 64, "variant": "bag_of_embeddings"})
    code = predict_main(["--model", "clf.pt", "--vocab", "vocab.json", "fine", "  ", "fine"])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == ("warning: review 2 is empty; its prediction says nothing "
                                    "about it")
    assert len(captured.out.strip().splitlines()) == 3


def test_a_vocabulary_other_than_the_models_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Same size, other words: the model would read nonsense without a word of warning."""
    import json

    from pipeline.models import BagOfEmbeddings, save_checkpoint
    from pipeline.text import Vocab

    monkeypatch.chdir(tmp_path)
    trained = ["<pad>", "<unk>", "<eos>", "fine", "awful"]
    (tmp_path / "vocab.json").write_text(json.dumps({"itos": trained}))
    (tmp_path / "other.json").write_text(json.dumps({"itos": trained[:3] + ["awful", "fine"]}))
    save_checkpoint(tmp_path / "clf.pt", "bag_of_embeddings",
                    {"vocab_size": 5, "embedding_dim": 8, "n_classes": 2, "dropout": 0.0},
                    BagOfEmbeddings(5, 8, 2, 0.0),
                    {"label_names": ["neg", "pos"], "max_len": 64, "variant": "bag_of_embeddings",
                     "vocab_sha256": Vocab(tuple(trained)).sha256})
    assert predict_main(["--model", "clf.pt", "--vocab", "vocab.json", "fine"]) == 0
    capsys.readouterr()
    assert predict_main(["--model", "clf.pt", "--vocab", "other.json", "fine"]) == 1
    captured = capsys.readouterr()
    assert "clf.pt was trained with another vocabulary" in captured.err
    assert captured.out == ""
