"""benchmarks/bench_inference.py: bad arguments and inputs are one line, not a traceback, and a
BPT3C checkpoint (max_len None: whole reviews) runs. Tiny inputs only: no timing is checked."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from benchmarks.bench_inference import parse_args, synthetic_corpus
from pipeline.config import load_params
from pipeline.models import EncoderConfig, RNNClassifier, save_checkpoint
from pipeline.runtime import cpu_has_bf16
from tests.conftest import REPO, run

SCRIPT = "benchmarks/bench_inference.py"


def bench(*args: str) -> object:
    return run([sys.executable, SCRIPT, *args], cwd=REPO, check=False, timeout=300)


@pytest.mark.parametrize(("args", "message"), [
    (["--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
    (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["--n", "0"], "argument --n: must be at least 1, got 0"),
    (["--n", "-5"], "argument --n: must be at least 1, got -5"),
    (["--n", "ten"], "argument --n: expected a whole number, got 'ten'"),
    (["--threads", "-1"], "argument --threads: must be 0 to 256, got -1"),
    (["--threads", "300"], "argument --threads: must be 0 to 256, got 300"),
])
def test_bad_arguments_are_usage_errors(args: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(args)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: {message}")


def test_threads_zero_means_one_per_core() -> None:
    assert parse_args(["--threads", "0"]).threads == 0


def test_unusable_checkpoint_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    result = bench("--synthetic", "--n", "4", "--threads", "1", "--checkpoint", str(missing))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"[bench] error: missing model file: {missing} (run the earlier stages: dvc repro)")
    assert "Traceback" not in result.stderr and not result.stdout
    # a language model (models/lm.pt) where a classifier is expected
    lm = tmp_path / "lm.pt"
    torch.save({"kind": "language_model", "config": {}, "state_dict": {}}, lm)
    result = bench("--synthetic", "--n", "4", "--threads", "1", "--checkpoint", str(lm))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"[bench] error: {lm} holds a 'language_model' model, expected 'rnn_classifier'")
    assert "Traceback" not in result.stderr


def test_bpt3c_checkpoint_reads_whole_reviews(tmp_path: Path) -> None:
    """The train stage writes max_len None for classifier.bpt3c: true (whole reviews)."""
    vocab = load_params(REPO / "params.yaml").vocab.max_size  # the synthetic reviews' vocabulary
    encoder = EncoderConfig(vocab_size=vocab, embedding_dim=4, hidden=4, layers=1)
    model = RNNClassifier(encoder, 2, grad_len=16, bptt=8)
    config = {"encoder": asdict(encoder), "n_classes": 2, "head_dropout": 0.3,
              "pooling": "concat", "grad_len": 16, "bptt": 8}
    checkpoint = tmp_path / "rnn_pretrained.pt"
    save_checkpoint(checkpoint, "rnn_classifier", config, model,
                    {"label_names": ["neg", "pos"], "max_len": None, "variant": "rnn_pretrained"})
    result = bench("--synthetic", "--n", "6", "--batch-size", "4", "--threads", "1",
                   "--checkpoint", str(checkpoint))
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["config"]["max_len"] is None
    assert line["config"]["hidden"] == 4  # the checkpoint's encoder, not params.yaml's
    # whole reviews: every token is read (before the fix: a TypeError on int(None))
    whole = int(synthetic_corpus(6, vocab).lengths.sum())
    assert line["config"]["real_tokens"] == whole
    assert f"{whole:,} tokens (whole reviews: no truncation)" in result.stderr
    assert line["predictions_agree"] == 1.0
    # where the CPU has bf16, evaluate's bf16 weights are timed beside the fp32 ones they
    # replaced, with the same probabilities
    assert ("weights_max_prob_diff" in line) == cpu_has_bf16()
    if cpu_has_bf16():
        assert line["weights_max_prob_diff"] == 0.0
        assert line["fp32_weights"]["samples_s"] and line["weights_speedup"] > 0


def test_bpt3c_params_read_whole_reviews_without_a_checkpoint(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With classifier.bpt3c: true and random weights, the benchmark reads what the train
    stage would: whole reviews, not classifier.max_len tokens."""
    from benchmarks import bench_inference

    params = load_params(REPO / "params.yaml")
    params = params.model_copy(update={
        "classifier": params.classifier.model_copy(update={"bpt3c": True, "max_len": 8}),
        "model": params.model.model_copy(update={"embedding_dim": 4, "hidden": 4})})
    monkeypatch.setattr(bench_inference, "load_params", lambda path: params)
    assert bench_inference.main(["--synthetic", "--n", "6", "--batch-size", "4",
                                 "--threads", "1"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["config"]["max_len"] is None
    assert line["config"]["real_tokens"] == int(synthetic_corpus(6, params.vocab.max_size)
                                                .lengths.sum())


def test_a_data_folder_without_test_reviews_is_an_error(tmp_path: Path) -> None:
    """Only the default folder falls back to synthetic reviews: a folder given by hand that
    lacks them is a mistake, not a reason to time something else."""
    result = bench("--data", str(tmp_path), "--n", "4", "--threads", "1")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"[bench] error: {tmp_path} has no test_ids.npy: give a vocab stage's output folder "
        "(data/vocab), or --synthetic")
