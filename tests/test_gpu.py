"""The CUDA code paths, on a real GPU. Skipped where there is none (CI, the 2-core
machines); on a GPU machine `pytest tests/test_gpu.py` runs them (README, "Testing on a
GPU"), and the rest of the suite then trains on the GPU too (runtime.device: auto)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.config import RuntimeParams
from pipeline.runtime import setup
from tests.conftest import stage, tiny_params
from tests.test_distributed import (
    EXACT,
    STAGES,
    assert_same_training,
    output_args,
    torchrun,
)
from tests.test_resume import prepare_inputs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def params_on(root: Path, device: str) -> str:
    """``root/params.yaml`` with ``runtime.device`` set, written beside it; its file name."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["runtime"]["device"] = device
    (root / f"{device}.yaml").write_text(yaml.safe_dump(params))
    return f"{device}.yaml"


@pytest.fixture(scope="module")
def exact_inputs(tmp_path_factory: pytest.TempPathFactory, tiny_archive: Path) -> Path:
    """Tiny data prepared once; no dropout and fp32 (see tests/test_distributed.py)."""
    root = tmp_path_factory.mktemp("gpu")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db"}
    prepare_inputs(root, tiny_params(tiny_archive, **EXACT), env)
    return root


def test_auto_runtime_takes_the_gpu_with_bf16() -> None:
    threads = torch.get_num_threads()
    runtime = setup(RuntimeParams(device="auto", threads=threads))
    assert runtime.device.type == "cuda"
    assert runtime.amp_dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported()
                                 else torch.float16)
    with runtime.autocast():
        out = torch.ones(4, 4, device=runtime.device) @ torch.ones(4, 4, device=runtime.device)
    assert out.dtype == runtime.amp_dtype


@pytest.mark.parametrize(("module", "args", "model", "summary", "key"), STAGES)
def test_gpu_training_matches_cpu_in_fp32(exact_inputs: Path, module: str, args: list[str],
                                          model: str, summary: str, key: str) -> None:
    """The same stage on CPU and GPU, fp32 (no TF32): the same weights up to summation order."""
    root = exact_inputs
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db"}
    for device in ("cpu", "cuda"):
        log = stage(module, *args, "--params", params_on(root, device),
                    *output_args(module, device), cwd=root, env=env).stdout
        if module == "pretrain":
            assert f"'device': '{device}'" in log
    assert_same_training(root / "cpu", root / "cuda", model, summary, key)


@pytest.mark.parametrize("classifier", [{}, {"bpt3c": True, "max_len": 12, "bptt": 5}],
                         ids=["truncated", "bpt3c"])
def test_bf16_fine_tuning_on_gpu_predicts_like_the_cpu(tmp_path: Path, tiny_archive: Path,
                                                       classifier: dict) -> None:
    """The default precision (bf16 autocast) end to end on the GPU: LM, fine-tuned
    classifier (reviews truncated, or read whole in chunks: BPT3C); its checkpoint loads on
    a CPU and predicts what the GPU predicts."""
    from pipeline.batching import Corpus
    from pipeline.models import load_checkpoint
    from pipeline.tasks import predict_proba

    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    prepare_inputs(tmp_path, tiny_params(tiny_archive, runtime={"device": "cuda"},
                                         classifier=classifier), env)
    log = stage("pretrain", "--params", "params.yaml", cwd=tmp_path, env=env).stdout
    assert "'device': 'cuda'" in log and "'precision': 'torch.bfloat16'" in log
    stage("train", "rnn_pretrained", "--params", "params.yaml", cwd=tmp_path, env=env)
    summary = json.loads((tmp_path / "reports/train/rnn_pretrained.json").read_text())
    assert 0.0 <= summary["valid_accuracy"] <= 1.0

    model, blob = load_checkpoint(tmp_path / "models/rnn_pretrained.pt")
    valid = Corpus.load(tmp_path / "data/vocab", "valid")
    on_cpu = predict_proba(model, valid, 64, blob["max_len"], torch.device("cpu"))
    runtime = setup(RuntimeParams(device="cuda", threads=torch.get_num_threads()))
    on_gpu = predict_proba(model.to("cuda"), valid, 64, blob["max_len"], runtime.device,
                           runtime)
    assert np.isfinite(on_gpu).all()
    # bf16 autocast on the GPU vs fp32 on the CPU: close, and the same decisions
    assert np.abs(on_gpu - on_cpu).max() < 0.05
    assert (on_gpu.argmax(1) == on_cpu.argmax(1)).mean() >= 0.95


@pytest.mark.skipif(torch.cuda.device_count() != 1, reason="checks the one-GPU refusal")
def test_more_processes_than_gpus_is_a_clear_error(exact_inputs: Path) -> None:
    root = exact_inputs
    with pytest.raises(AssertionError, match="NCCL needs one GPU per process"):
        torchrun("pretrain", "--params", params_on(root, "cuda"), *output_args("pretrain", "nccl"),
                 cwd=root, env={"MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db"})
    assert not (root / "nccl" / "lm.pt").exists()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs two GPUs")
@pytest.mark.parametrize(("module", "args", "model", "summary", "key"), STAGES)
def test_two_gpus_with_nccl_match_one(exact_inputs: Path, module: str, args: list[str],
                                      model: str, summary: str, key: str) -> None:
    root = exact_inputs
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db"}
    stage(module, *args, "--params", params_on(root, "cuda"), *output_args(module, "one"),
          cwd=root, env=env)
    log = torchrun(module, *args, "--params", params_on(root, "cuda"),
                   *output_args(module, "two"), cwd=root, env=env)
    assert "DistributedDataParallel over 2 processes (nccl)" in log
    assert_same_training(root / "one", root / "two", model, summary, key)
