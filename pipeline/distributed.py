"""Data-parallel training with DistributedDataParallel, launched by ``torchrun``.

``torchrun --nproc_per_node=N -m pipeline.stages.pretrain ...`` (or ``train``) starts N
processes; each takes every N-th row of every batch, DDP averages the gradients, so
every process holds the same weights after each step — the same update as one process
on the whole batch. Only rank 0 writes files and logs to MLflow. Backend: NCCL on CUDA,
gloo on CPU. Without torchrun (no ``WORLD_SIZE``) everything here is a no-op.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist
from torch import nn

from pipeline.errors import PipelineError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_world_size() -> int:
    """Processes torchrun started on this machine (1 without torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def init(device: torch.device) -> torch.device:
    """Join the process group (when launched by torchrun); the device this rank uses."""
    if world_size() == 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            # NCCL refuses two processes on one GPU ("Duplicate GPU detected")
            raise PipelineError(
                f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', '?')} processes on "
                f"this machine but it has {torch.cuda.device_count()} GPU(s): NCCL needs one "
                "GPU per process (--nproc_per_node at most the GPU count), or set "
                "runtime.device: cpu to train with gloo on the CPU")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    atexit.register(shutdown)
    return device


def wrap(model: nn.Module) -> nn.Module:
    """DDP around the model when distributed (unused parameters: adaptive-softmax tail
    clusters a batch never reaches, layers frozen by gradual unfreezing)."""
    if world_size() == 1:
        return model
    if is_main():
        print(f"DistributedDataParallel over {world_size()} processes ({dist.get_backend()})")
    return nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)


def shard(batch: tuple, size: int) -> tuple | None:
    """This rank's rows of a batch (every tensor whose first dimension is ``size``);
    None when the batch has fewer rows than processes (every rank skips it alike)."""
    n = world_size()
    if n == 1:
        return batch
    if size < n:
        return None
    return tuple(item[rank()::n] if torch.is_tensor(item) and item.dim() > 0
                 and item.size(0) == size else item for item in batch)


def mean_over_ranks(value: torch.Tensor) -> float:
    """A scalar's mean over all ranks, the same on every rank (one small all-reduce); alone,
    the value itself. For the loss: every rank logs the whole batch's loss, and a nan/inf
    on one rank's shard stops all of them at the same step, instead of leaving the others
    waiting in the next step's gradient all-reduce."""
    if world_size() == 1:
        return value.item()
    total = value.detach().float().clone()
    dist.all_reduce(total)
    return total.item() / world_size()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
