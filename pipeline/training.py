"""The one training loop, shared by the language model and the classifiers.

A *task* says what an epoch's batches are, how a batch turns into a loss, and how
to score the model on held-out data; :func:`fit` does the rest: mixed precision,
gradient clipping, the LR schedule, per-epoch evaluation, keeping the best weights,
early stopping, and checkpoints that let a killed run resume where it stopped.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from pipeline import distributed
from pipeline.config import RuntimeParams
from pipeline.errors import PipelineError
from pipeline.io import file_sha256
from pipeline.runtime import TRIM_ABOVE_BYTES, Runtime, release_free_memory
from pipeline.workspace import repo_of_experiment_workspace

# Test hooks: send this process a signal (SIGKILL unless PIPELINE_KILL_SIGNAL=INT) after
# N optimizer steps, to prove that resumption and Ctrl-C handling work.
KILL_AFTER_STEPS = "PIPELINE_KILL_AFTER_STEPS"
KILL_SIGNAL = "PIPELINE_KILL_SIGNAL"


Backward = Callable[[torch.Tensor], None]


class Task(Protocol):
    steps_per_epoch: int

    def batches(self, epoch: int, start: int) -> Iterable[Any]:
        """The batches of ``epoch``, from step ``start`` on (non-zero when resuming)."""

    def loss(self, model: nn.Module, batch: Any, backward: Backward | None = None
             ) -> torch.Tensor:
        """The batch's loss, for :func:`fit` to back-propagate. A task may back-propagate
        part of it itself, at once, with ``backward`` (which scales it as the rest will
        be): the returned tensor's graph then holds only the rest, its value still the
        whole loss. Adversarial training does so with its clean pass (one backward instead
        of two over that graph, and the graph freed before the second pass)."""

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    stopped_early: bool = False
    resumed_from_step: int = 0


@dataclass
class Progress:
    """Everything besides model/optimizer/scheduler needed to continue a run exactly."""

    epoch: int = 1  # the epoch in progress
    step: int = 0  # steps done in that epoch
    global_step: int = 0
    loss_total: float = 0.0  # running training loss of the epoch in progress
    bad_epochs: int = 0
    best_value: float | None = None
    elapsed: float = 0.0  # training seconds spent by earlier (killed) processes
    finished: bool = False
    result: FitResult = field(default_factory=FitResult)


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often :func:`fit` saves its state; ``fingerprint`` guards resumption."""

    path: Path
    every: int  # optimizer steps between checkpoints; 0 = only at the end of each epoch
    fingerprint: str

    @staticmethod
    def fingerprint_of(*parts: object) -> str:
        blob = json.dumps(parts, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @classmethod
    def for_stage(cls, name: str, settings: dict, runtime: RuntimeParams, data_info: dict,
                  inputs: Iterable[Path] = ()) -> Checkpointing:
        """A training stage's resumable state, valid only for the same settings and data, and
        the same ``inputs`` files byte for byte (the language model a classifier starts from,
        a student's pseudo-labels): a fine-tuning killed while it started from one language
        model must not be resumed by a run that starts from a retrained one."""
        world = distributed.world_size()
        fingerprint = cls.fingerprint_of(
            name, settings, runtime.seed, runtime.precision, data_info,
            *[file_sha256(path) for path in inputs],
            *([f"world_size={world}"] if world > 1 else []))
        folder = Path(runtime.checkpoint_dir)
        main_repo = repo_of_experiment_workspace(Path.cwd())
        if main_repo is not None and not folder.is_absolute():
            # A DVC experiment's temporary workspace (`dvc exp run --queue/--temp`) is
            # deleted with the experiment, killed or not; DVC's run cache restores the
            # finished stages of a rerun, and this lets it resume the killed one too. One
            # folder per fingerprint keeps concurrent queue workers apart.
            folder = main_repo / folder / "exps" / fingerprint
        return cls(folder / f"{name}.pt", runtime.checkpoint_every, fingerprint)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        if self.path.parent.name == self.fingerprint:  # an experiment's own folder
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()


def _save(checkpoint: Checkpointing, model: nn.Module, optimizer: torch.optim.Optimizer,
          scheduler: Any, scaler: torch.amp.GradScaler, task: Task, progress: Progress,
          best_state: dict | None, elapsed: float) -> None:
    state = {
        "fingerprint": checkpoint.fingerprint,
        "model": model.state_dict(),
        "best_model": best_state,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "task": task.state_dict(),
        "progress": {**asdict(progress), "elapsed": elapsed},
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    checkpoint.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = checkpoint.path.with_name(checkpoint.path.name + f".{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, checkpoint.path)  # atomic: a kill mid-save keeps the previous checkpoint


def _load(checkpoint: Checkpointing, model: nn.Module, optimizer: torch.optim.Optimizer,
          scheduler: Any, scaler: torch.amp.GradScaler, task: Task
          ) -> tuple[Progress, dict | None] | None:
    if not checkpoint.path.exists():
        return None
    try:
        state = torch.load(checkpoint.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged checkpoint is not worth failing the run for
        print(f"[checkpoint] ignoring unreadable {checkpoint.path}: {exc}")
        return None
    if state.get("fingerprint") != checkpoint.fingerprint:
        print(f"[checkpoint] {checkpoint.path} is from other settings, data or input files; "
              "starting over")
        return None
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    if {key: tuple(value.shape) for key, value in state["model"].items()} != shapes:
        # same settings, written by another version of the model code: checked before
        # loading, which would copy the tensors that do fit and then fail
        print(f"[checkpoint] {checkpoint.path} holds other parameters than this model "
              "(written by another version); starting over")
        return None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    task.load_state_dict(state["task"])
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    raw = dict(state["progress"])
    raw["result"] = FitResult(**raw["result"])
    return Progress(**raw), state["best_model"]


def fit(model: nn.Module, task: Task, optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None, runtime: Runtime, *,
        epochs: int, clip: float, monitor: str, higher_is_better: bool,
        patience: int | None = None, desc: str = "train",
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        on_epoch_start: Callable[[int], None] | None = None,
        checkpoint: Checkpointing | None = None) -> FitResult:
    """Train for ``epochs``; leave the model holding the weights of its best epoch."""
    scaler = torch.amp.GradScaler(enabled=runtime.amp_dtype == torch.float16)
    train_model = distributed.wrap(model)  # DDP under torchrun; the model itself otherwise
    main = distributed.is_main()
    progress, best_state = Progress(), None
    if checkpoint is not None:
        loaded = _load(checkpoint, model, optimizer, scheduler, scaler, task)
        if loaded is not None:
            progress, best_state = loaded
            progress.result.resumed_from_step = progress.global_step
            if main:
                print(f"[{desc}] resuming from {checkpoint.path}: epoch {progress.epoch}, "
                      f"step {progress.step}")
            for entry in progress.result.history:  # replay the curve into the new run
                if on_epoch is not None:
                    on_epoch(int(entry["epoch"]), entry)
    result = progress.result
    kill_after = int(os.environ.get(KILL_AFTER_STEPS, "0"))
    kill_signal = signal.SIGINT if os.environ.get(KILL_SIGNAL) == "INT" else signal.SIGKILL
    steps_here = 0
    started = time.perf_counter() - progress.elapsed

    def save() -> None:
        if checkpoint is not None and main:  # one writer; every rank holds the same state
            _save(checkpoint, model, optimizer, scheduler, scaler, task, progress, best_state,
                  time.perf_counter() - started)

    # Ctrl-C asks the loop to stop at the next step boundary, so the checkpoint it saves is
    # consistent (a KeyboardInterrupt raised mid-step, or inside some __del__ where Python
    # swallows it, would not be); a second Ctrl-C stops at once.
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        if stop_requested:
            raise KeyboardInterrupt
        stop_requested = True

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGINT, request_stop) if in_main_thread else None
    try:
        while not progress.finished and progress.epoch <= epochs:
            epoch = progress.epoch
            if on_epoch_start is not None:
                on_epoch_start(epoch)  # e.g. unfreeze layers; also called when resuming
            model.train()
            bar = tqdm(task.batches(epoch, progress.step), total=task.steps_per_epoch,
                       initial=progress.step, desc=f"{desc} {epoch}/{epochs}", unit="step",
                       mininterval=2.0, disable=not main)
            for batch in bar:
                rows = len(batch[0])
                batch = distributed.shard(batch, rows)  # this rank's rows (all of them alone)
                if batch is None:
                    continue
                # DDP averages over ranks: weight uneven shards so the update is the whole
                # batch's mean gradient, as in one process
                weight = len(batch[0]) * distributed.world_size() / rows
                backward = functools.partial(scaled_backward, scaler, weight, runtime.device.type)
                optimizer.zero_grad(set_to_none=True)
                with runtime.autocast():
                    loss = task.loss(train_model, batch, backward)
                backward(loss)
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), clip)
                scaler.step(optimizer)
                scaler.update()
                if scheduler is not None:
                    scheduler.step()
                # all ranks see the same: the whole batch's loss
                loss_value = distributed.mean_over_ranks(loss.detach() * weight)
                if not math.isfinite(loss_value):  # the weights are nan from here on
                    raise PipelineError(
                        f"training diverged: the loss is {loss_value} at epoch {epoch}, step "
                        f"{progress.step + 1}; lower the learning rate")
                progress.loss_total += loss_value
                progress.step += 1
                progress.global_step += 1
                steps_here += 1
                if progress.step % 20 == 0:
                    bar.set_postfix(loss=f"{progress.loss_total / progress.step:.3f}")
                release_free_memory(TRIM_ABOVE_BYTES)  # bounds peak memory (see the function)
                if checkpoint is not None and checkpoint.every and \
                        progress.global_step % checkpoint.every == 0:
                    save()
                if kill_after and steps_here == kill_after:
                    os.kill(os.getpid(), kill_signal)
                if stop_requested:
                    raise KeyboardInterrupt
            bar.close()
            model.eval()
            with torch.no_grad(), runtime.autocast():
                metrics = task.evaluate(model)
            release_free_memory()
            metrics = {"epoch": epoch,
                       "train_loss": progress.loss_total / max(progress.step, 1), **metrics,
                       "elapsed_seconds": time.perf_counter() - started}
            result.history.append(metrics)
            if main:
                print(f"[{desc}] epoch {epoch}: " + ", ".join(
                    f"{k}={v:.4f}" for k, v in metrics.items() if k != "epoch"))
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            value = metrics[monitor]
            best = progress.best_value
            if best is None or (value > best if higher_is_better else value < best):
                progress.best_value, progress.bad_epochs = value, 0
                best_state = copy.deepcopy(model.state_dict())
                result.best_epoch, result.best = epoch, metrics
            else:
                progress.bad_epochs += 1
                if patience is not None and progress.bad_epochs >= patience and epoch < epochs:
                    print(f"[{desc}] early stop: {monitor} has not improved for "
                          f"{patience} epochs")
                    result.stopped_early = True
                    progress.finished = True
            progress.epoch, progress.step, progress.loss_total = epoch + 1, 0, 0.0
            save()
            if stop_requested:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        save()
        if checkpoint is not None:
            print(f"\n[{desc}] interrupted: checkpoint saved to {checkpoint.path}; "
                  "run the stage again (dvc repro) to resume")
        raise
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
    if best_state is not None:
        model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - started
    return result


def scaled_backward(scaler: torch.amp.GradScaler, weight: float, device_type: str,
                    loss: torch.Tensor) -> None:
    """Back-propagate (part of) a step's loss, weighted and loss-scaled, outside autocast
    (PyTorch advises against backward passes under autocast; a task calls this inside)."""
    if weight != 1:
        loss = loss * weight
    with torch.autocast(device_type, enabled=False):
        scaler.scale(loss).backward()


def adamw(params: Iterable, **settings: Any) -> torch.optim.AdamW:
    """AdamW with the fused kernel: one pass over each parameter instead of ~8 separate
    element-wise ops; on the 30k x 256 embedding that took the LM step from ~16k to
    ~18k tokens/s here (benchmarks/README.md). Same update rule, same state_dict."""
    return torch.optim.AdamW(params, fused=True, **settings)


def one_cycle(optimizer: torch.optim.Optimizer, total_steps: int
              ) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle schedule (warm-up over 10% of the steps, then cosine annealing) that
    peaks at each parameter group's own LR; a constant LR for very short runs."""
    if total_steps < 4:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=total_steps, pct_start=min(0.5, max(0.1, 2.0 / total_steps)))
