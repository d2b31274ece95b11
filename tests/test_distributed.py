"""`torchrun --nproc_per_node=2` (gloo, CPU): DistributedDataParallel training of the
language model and a classifier matches one process on the whole batch. (NCCL on two
GPUs: tests/test_gpu.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import run, stage, tiny_params
from tests.test_resume import prepare_inputs

pytestmark = pytest.mark.slow

# no dropout and fp32: the two runs then differ only by floating-point summation order
EXACT = {"model": {"dropout": 0.0, "embedding_dropout": 0.0, "input_dropout": 0.0},
         "runtime": {"device": "cpu", "precision": "fp32", "threads": 1,
                     "checkpoint_every": 0},
         "pretrain": {"epochs": 2, "steps_per_epoch": 5, "batch_size": 4},
         "classifier": {"batch_size": 5, "rnn_scratch": {"epochs": 2, "head_dropout": 0.0}}}


def torchrun(module: str, *args: str, cwd: Path, env: dict) -> str:
    result = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                  "--nproc_per_node=2", "-m", f"pipeline.stages.{module}", *args],
                 cwd=cwd, env=env)
    return result.stdout


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


# (stage module, its arguments, model file, summary file, summary key)
STAGES = [
    ("pretrain", [], "lm.pt", "metrics.json", "valid_perplexity"),
    ("train", ["rnn_scratch"], "rnn_scratch.pt", "train/rnn_scratch.json", "valid_accuracy"),
]


def output_args(module: str, out: str) -> list[str]:
    """A stage's output options, every file under the directory ``out``."""
    if module == "pretrain":
        return ["--out", f"{out}/lm.pt", "--metrics", f"{out}/metrics.json",
                "--curve", f"{out}/curve.csv"]
    return ["--out-dir", out, "--reports", out]


def assert_same_training(a: Path, b: Path, model: str, summary: str, key: str) -> None:
    """Two runs' weights (saved on the CPU) and summary metric agree up to summation order."""
    weights_a, weights_b = weights(a / model), weights(b / model)
    assert weights_a.keys() == weights_b.keys()
    for name, tensor in weights_b.items():
        assert tensor.device.type == "cpu", f"{name} saved on {tensor.device}"
        worst = (tensor - weights_a[name]).abs().max().item()
        assert torch.allclose(tensor, weights_a[name], rtol=1e-3, atol=1e-4), (name, worst)
    summary_a = json.loads((a / summary).read_text())
    summary_b = json.loads((b / summary).read_text())
    assert summary_b[key] == pytest.approx(summary_a[key], rel=1e-3)


@pytest.mark.parametrize(("module", "args", "model", "summary", "key"), STAGES)
def test_two_processes_match_one(tmp_path: Path, tiny_archive: Path, module: str,
                                 args: list[str], model: str, summary: str, key: str) -> None:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    prepare_inputs(tmp_path, tiny_params(tiny_archive, **EXACT), env)
    stage(module, *args, "--params", "params.yaml", *output_args(module, "single"),
          cwd=tmp_path, env=env)
    log = torchrun(module, *args, "--params", "params.yaml", *output_args(module, "ddp"),
                   cwd=tmp_path, env=env)
    assert "DistributedDataParallel over 2 processes (gloo)" in log
    assert log.count("epoch 1:") == 1  # rank 0 alone reports

    assert_same_training(tmp_path / "single", tmp_path / "ddp", model, summary, key)
    if module == "pretrain":  # both processes' tokens are counted
        a = json.loads((tmp_path / "single" / summary).read_text())
        b = json.loads((tmp_path / "ddp" / summary).read_text())
        assert b["tokens"] == a["tokens"]
    assert not list(tmp_path.glob("**/*.tmp"))
