"""`torchrun --nproc_per_node=2` (gloo, CPU): DistributedDataParallel training of the
language model and a classifier matches one process on the whole batch. (NCCL on two
GPUs: tests/test_gpu.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import REPO, run, stage, tiny_params
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
    # the logged training loss is the whole batch's (all ranks'), not rank 0's half
    curve = "curve.csv" if module == "pretrain" else "curves/rnn_scratch.csv"
    loss_a = pd.read_csv(tmp_path / "single" / curve)["train_loss"]
    loss_b = pd.read_csv(tmp_path / "ddp" / curve)["train_loss"]
    assert loss_b.to_numpy() == pytest.approx(loss_a.to_numpy(), rel=1e-4)
    if module == "pretrain":  # both processes' tokens are counted
        a = json.loads((tmp_path / "single" / summary).read_text())
        b = json.loads((tmp_path / "ddp" / summary).read_text())
        assert b["tokens"] == a["tokens"]
    assert not list(tmp_path.glob("**/*.tmp"))


# rank 1's loss turns inf at its third step while every gradient stays finite (as when a
# GradScaler skips an fp16 overflow): the weights stay the same on both ranks
ONE_RANK_OVERFLOWS = """
import sys

import torch

from pipeline import distributed
from pipeline.config import RuntimeParams
from pipeline.errors import PipelineError
from pipeline.models import BagOfEmbeddings
from pipeline.runtime import setup
from pipeline.tasks import ClassifierTask
from pipeline.training import fit
from tests.test_training import keyword_corpus


class OneRankOverflows(ClassifierTask):
    calls = 0

    def loss(self, model, batch, backward=None):
        self.calls += 1
        loss = super().loss(model, batch, backward)
        return loss + float("inf") if distributed.rank() == 1 and self.calls == 3 else loss


runtime = setup(RuntimeParams(device="cpu", threads=1, precision="fp32", seed=0))
task = OneRankOverflows(keyword_corpus(64, 0), keyword_corpus(32, 1), 8, 20, 0, runtime.device)
model = BagOfEmbeddings(40, 8, 2)
try:
    fit(model, task, torch.optim.AdamW(model.parameters(), lr=0.01), None, runtime, epochs=2,
        clip=1.0, monitor="valid_accuracy", higher_is_better=True)
except PipelineError as error:
    print(f"rank {distributed.rank()}: {error}", flush=True)
    sys.exit(3)
"""


def test_a_nan_loss_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    """Each rank used to check only its own loss: rank 1 stopped with the message, rank 0
    went on into the next gradient all-reduce and died there with gloo's raw "Connection
    closed by peer" traceback (NCCL would wait there until its watchdog's timeout)."""
    script = tmp_path / "one_rank_overflows.py"
    script.write_text(ONE_RANK_OVERFLOWS)
    result = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                  "--nproc_per_node=2", str(script)], cwd=REPO, env={"PYTHONPATH": str(REPO)},
                 check=False, timeout=180)
    assert result.returncode != 0
    for rank in (0, 1):
        assert (f"rank {rank}: training diverged: the loss is inf at epoch 1, step 3"
                in result.stdout), result.stdout + result.stderr
