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


@pytest.mark.parametrize(("module", "args", "key"), [
    ("pretrain", [], "valid_perplexity"),
    ("train", ["rnn_scratch"], "valid_accuracy"),
])
def test_two_processes_match_one(tmp_path: Path, tiny_archive: Path, module: str,
                                 args: list[str], key: str) -> None:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    prepare_inputs(tmp_path, tiny_params(tiny_archive, **EXACT), env)
    if module == "pretrain":
        output, metrics = ["--out", "{}/lm.pt"], ["--metrics", "{}/metrics.json",
                                                  "--curve", "{}/curve.csv"]
    else:
        output, metrics = ["--out-dir", "{}"], ["--reports", "{}"]
    outputs = {}
    for mode in ("single", "ddp"):
        extra = [a.format(mode) for a in output + metrics]
        if mode == "single":
            stage(module, *args, "--params", "params.yaml", *extra, cwd=tmp_path, env=env)
        else:
            log = torchrun(module, *args, "--params", "params.yaml", *extra, cwd=tmp_path,
                           env=env)
            assert "DistributedDataParallel over 2 processes (gloo)" in log
            assert log.count("epoch 1:") == 1  # rank 0 alone reports
        outputs[mode] = Path(tmp_path / mode)

    if module == "pretrain":
        model_name, summary = "lm.pt", "metrics.json"
    else:
        model_name, summary = "rnn_scratch.pt", "train/rnn_scratch.json"
    single = weights(outputs["single"] / model_name)
    ddp = weights(outputs["ddp"] / model_name)
    assert single.keys() == ddp.keys()
    for name in single:
        assert torch.allclose(single[name], ddp[name], rtol=1e-3, atol=1e-4), name
    a = json.loads((outputs["single"] / summary).read_text())
    b = json.loads((outputs["ddp"] / summary).read_text())
    assert b[key] == pytest.approx(a[key], rel=1e-3)
    if module == "pretrain":  # both processes' tokens are counted
        assert b["tokens"] == a["tokens"]
    assert not list(tmp_path.glob("**/*.tmp"))
