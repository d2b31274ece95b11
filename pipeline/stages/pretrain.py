"""Stage 5 — pretrain: an RNN language model on train + unlabeled text, no labels.

``--direction backward`` trains the same model on every document read from its end to
its start (ULMFiT's backward LM): its classifier, ``rnn_pretrained_backward``, makes
errors unlike the forward one's, and the ensemble stage averages the two.

``--init models/lm.pt`` starts from a saved language model's weights (same direction,
vocabulary, encoder and softmax) instead of random ones, with a fresh optimizer and one-cycle
schedule over ``pretrain.epochs``: more pretraining of a finished model (a warm restart),
outside ``dvc repro``, for experiments (docs/experiments/lm_restart.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

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
from pipeline.runtime import setup
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
    batches = BPTTBatches(stream, config.batch_size, config.bptt)
    task = LanguageModelTask(batches, valid_stream, config.bptt, config.steps_per_epoch,
                             runtime.device)
    encoder = EncoderConfig.of(params.model, info["vocab_size"])
    torch.manual_seed(params.runtime.seed)
    model = LanguageModel(encoder, config.softmax, tuple(config.adaptive_cutoffs))
    if args.init is not None:
        load_initial_weights(model, args.init, direction, info)
    model.to(runtime.device)
    optimizer = adamw(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = one_cycle(optimizer, config.epochs * task.steps_per_epoch)
    print(f"[{name}] {direction} stream of {len(stream):,} tokens; {config.epochs} epoch(s) x "
          f"{task.steps_per_epoch} steps of {config.batch_size}x{config.bptt}; "
          f"{sum(p.numel() for p in model.parameters()):,} parameters; {runtime.describe()}")

    checkpoint = Checkpointing.for_stage(
        name, flatten(params, ("data", "vocab", "model", "pretrain")), params.runtime, info,
        [args.init] if args.init is not None else [])

    def train(on_epoch: Callable[[int, dict], None] | None) -> FitResult:
        return fit(model, task, optimizer, scheduler, runtime, epochs=config.epochs,
                   clip=config.clip, monitor="valid_loss", higher_is_better=False,
                   desc=name, on_epoch=on_epoch, checkpoint=checkpoint)

    if not distributed.is_main():  # torchrun: rank 0 logs and writes the outputs
        train(None)
        return
    with tracking.stage_run(params, name, name, SECTIONS):
        import mlflow

        mlflow.log_params({f"runtime.{k}_used": v for k, v in runtime.describe().items()})
        result = train(lambda e, m: tracking.log_epoch(m, e))
        tokens = task.tokens_seen * distributed.world_size()  # every rank's share
        metrics = {
            "direction": direction,
            "valid_perplexity": result.best["valid_perplexity"],
            "valid_loss": result.best["valid_loss"],
            "epochs": len(result.history),
            "best_epoch": result.best_epoch,
            "tokens": tokens,
            "stream_tokens": int(len(stream)),
            "train_seconds": result.seconds,
            "tokens_per_second": tokens / max(result.seconds, 1e-9),
        }
        checkpoint_config = {"encoder": encoder_dict(encoder), "softmax": config.softmax,
                             "cutoffs": list(config.adaptive_cutoffs)}
        # the model and its reports appear together, once MLflow has them too
        with atomic_outputs(args.out, args.metrics, args.curve) as (model_tmp, metrics_tmp,
                                                                     curve_tmp):
            save_checkpoint(model_tmp, "language_model", checkpoint_config, model,
                            {"vocab_size": info["vocab_size"],
                             "vocab_sha256": info["vocab_sha256"], "direction": direction})
            write_json(metrics_tmp, metrics)
            pd.DataFrame(result.history).to_csv(curve_tmp, index=False)
            mlflow.set_tag("direction", direction)
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if k != "direction"})
            mlflow.log_artifact(str(model_tmp), artifact_path="model")
            mlflow.log_artifact(str(curve_tmp), artifact_path="curves")
    checkpoint.discard()  # outputs are safely written: nothing left to resume
    print(f"[{name}] best valid perplexity {metrics['valid_perplexity']:.1f} "
          f"({metrics['tokens_per_second']:.0f} tokens/s)")


if __name__ == "__main__":
    run_stage("pretrain", main)
