"""Bad input: one clear message (no traceback) and no half-written output for DVC."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from tests.conftest import REPO, TinyRun, copy_project, stage, tiny_params
from tests.tiny_imdb import build_members, write_archive


def setup_stages(root: Path, archive: Path, env: dict, upto: tuple[str, ...], **overrides
                 ) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(archive, **overrides)))
    for module in upto:
        stage(module, "--params", "params.yaml", cwd=root, env=env)


def assert_clean_failure(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_unusual_reviews_flow_through(tmp_path: Path, pipeline_env: dict) -> None:
    """Enormous, HTML-heavy and non-Latin reviews are valid input, kept and tokenized."""
    members = {name: data for name, data in build_members(6, 3, 4).items()
               if not name.startswith(("aclImdb/train/pos/0_", "aclImdb/train/pos/1_",
                                       "aclImdb/train/neg/0_"))}
    members["aclImdb/train/pos/0_10.txt"] = ("Great film. " * 90_000).encode()  # ~1 MB
    members["aclImdb/train/pos/1_9.txt"] = (
        b"<i>Superb</i> &amp; <b>moving</b><br /><br /><br />&quot;A gem&quot; &lt;3")
    members["aclImdb/train/neg/0_1.txt"] = "Ужасный фильм. ひどい映画でした。".encode()
    archive = write_archive(tmp_path / "aclImdb_v1.tar.gz", members)
    setup_stages(tmp_path, archive, pipeline_env, ("fetch", "prepare", "tokenize"),
                 prepare={"valid_fraction": 0.3})
    tokens = pd.concat([pd.read_parquet(tmp_path / f"data/tokens/{s}.parquet")
                        for s in ("train", "valid")]).set_index("id")["tokens"]
    assert len(tokens["train/pos/0"]) == 270_000
    assert list(tokens["train/pos/1"]) == ["superb", "&", "moving", '"', "a", "gem", '"', "<3"]
    assert "ужасный" in list(tokens["train/neg/0"])


def test_bptt_larger_than_corpus(tmp_path: Path, tiny_archive: Path, pipeline_env: dict) -> None:
    setup_stages(tmp_path, tiny_archive, pipeline_env, ("fetch", "prepare", "tokenize", "vocab"))
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["pretrain"]["bptt"] = 100_000
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = stage("pretrain", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env,
                   check=False)
    assert_clean_failure(result, "pretrain.bptt=100000 is longer than each of the 4 stream rows")
    assert not (tmp_path / "models").exists()


def test_missing_input_names_the_stage_to_run(tmp_path: Path, tiny_archive: Path,
                                              pipeline_env: dict) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(tiny_archive)))
    result = stage("vocab", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env,
                   check=False)
    assert_clean_failure(result, "missing train tokens: data/tokens/train.parquet")
    assert not (tmp_path / "data" / "vocab").exists()


def test_invalid_params_fail_before_any_work(tmp_path: Path, tiny_archive: Path,
                                             pipeline_env: dict) -> None:
    params = tiny_params(tiny_archive)
    params["model"]["cell"] = "transformer"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = stage("fetch", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env,
                   check=False)
    assert_clean_failure(result, "model.cell: Input should be 'rnn', 'lstm' or 'gru'")
    assert not (tmp_path / "data").exists()


def test_vocabulary_that_does_not_match_the_lm(tmp_path: Path, tiny_archive: Path,
                                               pipeline_env: dict) -> None:
    setup_stages(tmp_path, tiny_archive, pipeline_env,
                 ("fetch", "prepare", "tokenize", "vocab", "pretrain"))
    info_path = tmp_path / "data/vocab/info.json"
    info = json.loads(info_path.read_text())
    info["vocab_size"] += 7  # as if the vocabulary had been rebuilt without retraining
    info_path.write_text(json.dumps(info))
    result = stage("train", "rnn_pretrained", "--params", "params.yaml", cwd=tmp_path,
                   env=pipeline_env, check=False)
    assert_clean_failure(result, "was trained with a vocabulary of")
    assert not (tmp_path / "models/rnn_pretrained.pt").exists()


def _limit_file_size() -> None:
    # a write past 4 KiB fails with EFBIG, as a full disk fails with ENOSPC; the tiny
    # dataset's train table is about 5 KiB, so prepare fails partway through its outputs
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_failing_write_leaves_no_partial_output(tmp_path: Path, tiny_archive: Path,
                                                pipeline_env: dict) -> None:
    setup_stages(tmp_path, tiny_archive, pipeline_env, ("fetch",))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.stages.prepare", "--params", "params.yaml"],
        cwd=tmp_path, env={**os.environ, **pipeline_env, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, preexec_fn=_limit_file_size)
    assert_clean_failure(result, "could not write data/prepared")
    assert not (tmp_path / "data/prepared").exists()
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["raw"]


def test_stale_or_incomplete_test_probabilities_are_refused(tmp_path: Path) -> None:
    import numpy as np
    import pytest

    from pipeline.errors import PipelineError
    from pipeline.stages.evaluate import read_probabilities, write_probabilities

    path = tmp_path / "test_probabilities.parquet"
    labels = np.array([0, 1, 1])
    probs = {"a": np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]], dtype=np.float32)}
    write_probabilities(path, labels, ["neg", "pos"], probs)
    assert np.array_equal(read_probabilities(path, ("a",), ["neg", "pos"], labels)["a"],
                          probs["a"])
    with pytest.raises(PipelineError, match="another test set: rerun evaluate"):
        read_probabilities(path, ("a",), ["neg", "pos"], np.array([0, 0, 1]))
    with pytest.raises(PipelineError, match="lacks a column"):
        read_probabilities(path, ("b",), ["neg", "pos"], labels)
    with pytest.raises(PipelineError, match="missing"):
        read_probabilities(tmp_path / "absent.parquet", ("a",), ["neg", "pos"], labels)


def test_evaluate_checks_its_inputs_before_writing(tmp_path: Path, tiny_run: TinyRun) -> None:
    """A missing training curve used to surface as a traceback after half of reports/plots
    had been written; now it is named before anything is, and plots/ appears whole."""
    root = copy_project(tiny_run.root, tmp_path / "repo")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    metrics = (root / "reports/metrics.json").read_bytes()
    shutil.rmtree(root / "reports/plots")
    (root / "reports/curves/rnn_scratch.csv").unlink()
    result = stage("evaluate", "--params", "params.yaml", cwd=root, env=env, check=False)
    assert_clean_failure(result, "missing training curve: reports/curves/rnn_scratch.csv")
    assert not (root / "reports/plots").exists()
    assert (root / "reports/metrics.json").read_bytes() == metrics
    assert not list((root / "reports").glob(".*.tmp"))
