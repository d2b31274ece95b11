"""Stage 5 — pretrain: an RNN language model on train + unlabeled text, no labels.

``--direction backward`` trains the same model on every document read from its end to
its start (ULMFiT's backward LM): its classifier, ``rnn_pretrained_backward``, makes
errors unlike the forward one's, and the ensemble stage averages the two.

``--init models/lm.pt`` starts from a saved language model's weights (same direction,
vocabulary, encoder and softmax) instead of random ones, with a fresh optimizer and one-cycle
schedule over ``pretrain.epochs``: more pretraining of a finished model (a warm restart),
outside ``dvc repro``, for experiments (docs/experiments/lm_restart.py).

``pretrain.restart_epochs`` > 0 does the same inside the stage: after the one-cycle schedule,
a second one (SGDR's warm restart, Loshchilov & Hutter 2017) of that many epochs from the best
weights, a fresh AdamW peaking at ``pretrain.restart_lr``, reading the stream from its start
again, seeded as the stage's start: the same model as the stage run again with ``--init`` on
its output (tests/test_pretrain_restart.py), so one ``dvc repro`` runs the two-phase recipe.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from pipeline import distributed, tracking
from pipeline.artifacts import VOCAB_INFO_KEYS
from pipeline.batching import BPTTBatches, Corpus, lm_stream
from pipeline.config import flatten, load_params
from pipeline.errors import PipelineError, run_stage
from pipeline.io import atomic_outputs, read_json, require, write_json
from pipeline.models import (
    EncoderConfig,
    LanguageModel,
    encoder_dict,
    load_language_model,
    save_checkpoint,
)
from pipeline.runtime import seed_everything, setup
from pipeline.tasks import LanguageModelTask
from pipeline.training import Checkpointing, FitResult, adamw, fit, one_cycle

SECTIONS = ("data", "vocab", "model", "pretrain", "runtime")

DIRECTIONS = ("forward", "backward")


def training_corpora(data_dir: Path, max_documents: int | None) -> list[Corpus]:
    train, unlabeled = Corpus.load(data_dir, "train"), Corpus.load(data_dir, "unlabeled")
    if max_documents is None:
        return [train, unlabeled]
    train = train.subset(max_documents)
    return [train, unlabeled.subset(max_documents - len(train))]


def in_direction(corpora: list[Corpus], direction: str) -> list[Corpus]:
    return corpora if direction == "forward" else [c.reversed() for c in corpora]


class Cycle(NamedTuple):
    """One one-cycle schedule of the language model's training, with its own AdamW."""

    name: str  # its progress bar's and checkpoint's name
    epochs: int
    lr: float  # the schedule's peak


@dataclass
class Pretrained:
    """The language model after the cycles trained so far, and what they measured."""

    model: LanguageModel | None = None
    results: list[FitResult] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)  # every cycle's epochs, numbered on
    tokens: int = 0
    checkpoints: list[Checkpointing] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return sum(len(result.history) for result in self.results)

    @property
    def seconds(self) -> float:
        return sum(result.seconds for result in self.results)

    def numbered(self, row: dict) -> dict:
        """An epoch's row from the cycle in training (the one after those added), numbered
        and timed on from the cycles before it, with the cycle's number."""
        return {**row, "epoch": self.epochs + row["epoch"], "cycle": len(self.results) + 1,
                "elapsed_seconds": self.seconds + row["elapsed_seconds"]}

    def add(self, model: LanguageModel, result: FitResult, tokens: int,
            checkpoint: Checkpointing) -> None:
        self.history += [self.numbered(row) for row in result.history]
        self.model = model
        self.results.append(result)
        self.tokens += tokens
        self.checkpoints.append(checkpoint)


def load_initial_weights(model: LanguageModel, path: Path, direction: str, info: dict) -> None:
    """``model``'s weights from the language model saved at ``path``, checked to be the same
    model: the vocabulary, direction, encoder architecture and softmax (dropouts may differ)."""
    saved = load_language_model(path, model.encoder.config, info["vocab_sha256"], direction,
                                f"--init for a {direction} one")
    try:
        model.load_state_dict(saved.state_dict())
    except RuntimeError as exc:  # another softmax or other adaptive cutoffs
        raise PipelineError(f"{path} does not fit params.yaml's pretrain.softmax and "
                            f"adaptive_cutoffs: {exc}") from exc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--direction", choices=DIRECTIONS, default="forward",
                        help="backward: every document reversed (the backward LM)")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this saved language model's weights (a warm restart)")
    parser.add_argument("--data", default="data/vocab")
    parser.add_argument("--out", default="models/lm.pt")
    parser.add_argument("--metrics", default="reports/pretrain.json")
    parser.add_argument("--curve", default="reports/curves/pretrain.csv")
    args = parser.parse_args()
    params = load_params(args.params)
    config = params.pretrain
    data_dir = Path(args.data)
    info = read_json(require(data_dir / "info.json", "vocabulary"), VOCAB_INFO_KEYS)
    runtime = setup(params.runtime)
    if distributed.is_main():
        tracking.connect()  # fail fast, before any training

    direction = args.direction
    name = "pretrain" if direction == "forward" else f"pretrain_{direction}"
    stream = lm_stream(in_direction(training_corpora(data_dir, config.max_documents), direction))
    valid_stream = lm_stream(in_direction([Corpus.load(data_dir, "valid")], direction))
    if len(valid_stream) < 4:
        raise PipelineError("the valid split has too little text to measure perplexity")
    encoder = EncoderConfig.of(params.model, info["vocab_size"])
    cycles = [Cycle(name, config.epochs, config.lr)]
    if config.restart_epochs:
        cycles.append(Cycle(f"{name}_restart", config.restart_epochs, config.restart_lr))
    settings = flatten(params, ("data", "vocab", "model", "pretrain"))
    # the first cycle does not depend on the restart's settings: a run killed during the
    # restart and rerun with other ones resumes after the first cycle (hours on a CPU)
    first_cycle_settings = {key: value for key, value in settings.items()
                            if not key.startswith("pretrain.restart_")}
    inputs = [args.init] if args.init is not None else []

    def new_model() -> LanguageModel:
        return LanguageModel(encoder, config.softmax, tuple(config.adaptive_cutoffs))

    def initial_model(previous: LanguageModel | None) -> LanguageModel:
        """The model a cycle starts from: random, --init's, or (a restart) ``previous``'s
        weights, with the random generators where the stage run again with --init on
        ``previous`` would have them, so the dropout masks that follow are the same too."""
        seed_everything(params.runtime.seed)
        model = new_model()
        if previous is not None:
            new_model()  # --init builds the model it reads the saved weights into
            model.load_state_dict(previous.state_dict())
        elif args.init is not None:
            load_initial_weights(model, args.init, direction, info)
        return model

    def train(on_epoch: Callable[[int, dict], None] | None) -> Pretrained:
        done = Pretrained()

        def log(epoch: int, metrics: dict) -> None:  # epochs numbered on across cycles
            row = done.numbered(metrics)
            on_epoch(row["epoch"], row)

        for cycle in cycles:
            model = initial_model(done.model).to(runtime.device)
            # the stream from its start, as a fresh stage run reads it
            task = LanguageModelTask(BPTTBatches(stream, config.batch_size, config.bptt),
                                     valid_stream, config.bptt, config.steps_per_epoch,
                                     runtime.device)
            optimizer = adamw(model.parameters(), lr=cycle.lr,
                              weight_decay=config.weight_decay)
            scheduler = one_cycle(optimizer, cycle.epochs * task.steps_per_epoch)
            print(f"[{cycle.name}] {direction} stream of {len(stream):,} tokens; "
                  f"{cycle.epochs} epoch(s) x {task.steps_per_epoch} steps of "
                  f"{config.batch_size}x{config.bptt}, peak LR {cycle.lr}; "
                  f"{sum(p.numel() for p in model.parameters()):,} parameters; "
                  f"{runtime.describe()}")
            checkpoint = Checkpointing.for_stage(
                cycle.name, settings if done.results else first_cycle_settings, params.runtime,
                info, inputs)
            result = fit(model, task, optimizer, scheduler, runtime, epochs=cycle.epochs,
                         clip=config.clip, monitor="valid_loss", higher_is_better=False,
                         desc=cycle.name, on_epoch=log if on_epoch is not None else None,
                         checkpoint=checkpoint)
            done.add(model, result, task.tokens_seen, checkpoint)
        return done

    if not distributed.is_main():  # torchrun: rank 0 logs and writes the outputs
        train(None)
        return
    with tracking.stage_run(params, name, name, SECTIONS):
        import mlflow

        mlflow.log_params({f"runtime.{k}_used": v for k, v in runtime.describe().items()})
        done = train(lambda e, m: tracking.log_epoch(m, e))
        tokens = done.tokens * distributed.world_size()  # every rank's share
        last = done.results[-1]
        metrics = {
            "direction": direction,
            "valid_perplexity": last.best["valid_perplexity"],
            "valid_loss": last.best["valid_loss"],
            "epochs": done.epochs,
            "best_epoch": done.epochs - len(last.history) + last.best_epoch,
            "tokens": tokens,
            "stream_tokens": int(len(stream)),
            "train_seconds": done.seconds,
            "tokens_per_second": tokens / max(done.seconds, 1e-9),
        }
        if len(done.results) > 1:  # where the warm restart started from
            metrics["first_cycle_valid_perplexity"] = done.results[0].best["valid_perplexity"]
        checkpoint_config = {"encoder": encoder_dict(encoder), "softmax": config.softmax,
                             "cutoffs": list(config.adaptive_cutoffs)}
        # the model and its reports appear together, once MLflow has them too
        with atomic_outputs(args.out, args.metrics, args.curve) as (model_tmp, metrics_tmp,
                                                                     curve_tmp):
            save_checkpoint(model_tmp, "language_model", checkpoint_config, done.model,
                            {"vocab_size": info["vocab_size"],
                             "vocab_sha256": info["vocab_sha256"], "direction": direction})
            write_json(metrics_tmp, metrics)
            pd.DataFrame(done.history).to_csv(curve_tmp, index=False)
            mlflow.set_tag("direction", direction)
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if k != "direction"})
            mlflow.log_artifact(str(model_tmp), artifact_path="model")
            mlflow.log_artifact(str(curve_tmp), artifact_path="curves")
    for checkpoint in done.checkpoints:  # outputs are safely written: nothing left to resume
        checkpoint.discard()
    print(f"[{name}] best valid perplexity {metrics['valid_perplexity']:.1f} "
          f"({metrics['tokens_per_second']:.0f} tokens/s)")


if __name__ == "__main__":
    run_stage("pretrain", main)
