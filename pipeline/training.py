"""The one training loop, shared by the language model and the classifiers.

A *task* says what an epoch's batches are, how a batch turns into a loss, and how
to score the model on held-out data; :func:`fit` does the rest: mixed precision,
gradient clipping, the LR schedule, per-epoch evaluation, keeping the best weights
and early stopping.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from pipeline.runtime import Runtime


class Task(Protocol):
    steps_per_epoch: int

    def batches(self, epoch: int) -> Iterable[Any]: ...

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    stopped_early: bool = False


def fit(model: nn.Module, task: Task, optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None, runtime: Runtime, *,
        epochs: int, clip: float, monitor: str, higher_is_better: bool,
        patience: int | None = None, desc: str = "train",
        on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> FitResult:
    """Train for ``epochs``; leave the model holding the weights of its best epoch."""
    scaler = torch.amp.GradScaler(enabled=runtime.amp_dtype == torch.float16)
    result = FitResult()
    best_state: dict[str, torch.Tensor] | None = None
    best_value = -math.inf if higher_is_better else math.inf
    bad_epochs = 0
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        total, steps = 0.0, 0
        bar = tqdm(task.batches(epoch), total=task.steps_per_epoch, desc=f"{desc} {epoch}/{epochs}",
                   unit="step", mininterval=2.0)
        for batch in bar:
            with runtime.autocast():
                loss = task.loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            total += loss.item()
            steps += 1
            if steps % 20 == 0:
                bar.set_postfix(loss=f"{total / steps:.3f}")
        bar.close()
        model.eval()
        with torch.no_grad(), runtime.autocast():
            metrics = task.evaluate(model)
        metrics = {"epoch": epoch, "train_loss": total / max(steps, 1), **metrics,
                   "elapsed_seconds": time.perf_counter() - started}
        result.history.append(metrics)
        print(f"[{desc}] epoch {epoch}: " + ", ".join(
            f"{k}={v:.4f}" for k, v in metrics.items() if k != "epoch"))
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        value = metrics[monitor]
        improved = value > best_value if higher_is_better else value < best_value
        if improved:
            best_value, bad_epochs = value, 0
            best_state = copy.deepcopy(model.state_dict())
            result.best_epoch, result.best = epoch, metrics
        else:
            bad_epochs += 1
            if patience is not None and bad_epochs >= patience and epoch < epochs:
                print(f"[{desc}] early stop: {monitor} has not improved for {patience} epochs")
                result.stopped_early = True
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - started
    return result


def one_cycle(optimizer: torch.optim.Optimizer, total_steps: int
              ) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle schedule (warm-up over 10% of the steps, then cosine annealing) that
    peaks at each parameter group's own LR; a constant LR for very short runs."""
    if total_steps < 4:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=total_steps, pct_start=min(0.5, max(0.1, 2.0 / total_steps)))
