"""Stage 6 — train one classifier variant on the labeled train split, selected on valid.

Variants: ``rnn_pretrained`` (encoder from the language model, fine-tuned),
``rnn_pretrained_backward`` (the same from the backward language model, reading each
review from its end; fine-tuned with ``classifier.rnn_pretrained``'s settings),
``rnn_scratch`` (same architecture, random init), ``bag_of_embeddings`` (mean of word
embeddings -> linear) and ``bag_of_embeddings_lm`` (the same, its embeddings starting
from the language model's). All use the same training loop. ``classifier.train_examples``
limits the labeled examples (few-label studies); the language model saw all the text.
With ``--pseudo-labels`` (the opt-in self-training stages) the variant trains as a student,
``<variant>_self_trained``: on the labeled examples plus the pseudo_label stage's reviews,
with params.yaml ``self_training``'s batch size, patience and RNN epochs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from pipeline import distributed, tracking
from pipeline.artifacts import VOCAB_INFO_KEYS
from pipeline.batching import Corpus
from pipeline.config import (
    BACKWARD_VARIANT,
    LANGUAGE_MODEL_OF,
    SELF_TRAINED,
    VARIANTS,
    BagOfEmbeddingsLMParams,
    BagOfEmbeddingsParams,
    Params,
    RNNClassifierParams,
    flatten,
    load_params,
    with_overrides,
)
from pipeline.errors import PipelineError, run_stage
from pipeline.io import atomic_outputs, read_input, read_json, require, write_json
from pipeline.models import (
    BagOfEmbeddings,
    EncoderConfig,
    RNNClassifier,
    RNNEncoder,
    encoder_dict,
    load_language_model,
    save_checkpoint,
)
from pipeline.runtime import Runtime, setup
from pipeline.tasks import ClassifierTask
from pipeline.training import Checkpointing, FitResult, adamw, fit, one_cycle


def settings_of(params: Params, variant: str
                ) -> RNNClassifierParams | BagOfEmbeddingsParams | BagOfEmbeddingsLMParams:
    """A variant's classifier settings; the backward model is fine-tuned like the forward."""
    return getattr(params.classifier, "rnn_pretrained" if variant == BACKWARD_VARIANT else variant)


def regularization(settings: RNNClassifierParams | BagOfEmbeddingsParams
                   | BagOfEmbeddingsLMParams) -> dict[str, float]:
    """ClassifierTask's adversarial and virtual adversarial training settings for a variant;
    the bags of embeddings have neither (the task's defaults: off)."""
    if not isinstance(settings, RNNClassifierParams):
        return {}
    return {"adversarial_epsilon": settings.adversarial_epsilon,
            "adversarial_fraction": settings.adversarial_fraction,
            "virtual_epsilon": settings.virtual_adversarial_epsilon,
            "virtual_batch_size": settings.virtual_adversarial_batch_size}


def text_alone(data_dir: Path) -> Corpus:
    """Virtual adversarial training's reviews: the unlabeled split and the train split (all of
    it, whatever ``classifier.train_examples``), their labels left out."""
    return Corpus.concat(Corpus.load(data_dir, "unlabeled"), Corpus.load(data_dir, "train").text())


def pretrained_encoder(lm_path: Path, params: Params, vocab_size: int, vocab_sha256: str,
                       direction: str = "forward") -> RNNEncoder:
    """The language model's encoder, checked against the vocabulary and params.yaml's model
    section."""
    return load_language_model(lm_path, EncoderConfig.of(params.model, vocab_size), vocab_sha256,
                               direction, "this classifier", ": rerun pretrain (dvc repro)").encoder


def build(variant: str, params: Params, vocab_size: int, vocab_sha256: str, n_classes: int,
          lm_path: Path) -> tuple[nn.Module, str, dict, list[dict]]:
    """The model, its checkpoint kind and config, and optimizer parameter groups."""
    if variant in ("bag_of_embeddings", "bag_of_embeddings_lm"):
        boe = getattr(params.classifier, variant)
        dim = getattr(boe, "embedding_dim", params.model.embedding_dim)
        config = {"vocab_size": vocab_size, "embedding_dim": dim,
                  "n_classes": n_classes, "dropout": boe.dropout}
        model = BagOfEmbeddings(vocab_size, dim, n_classes, boe.dropout)
        if variant == "bag_of_embeddings_lm":
            lm_encoder = pretrained_encoder(lm_path, params, vocab_size, vocab_sha256)
            with torch.no_grad():
                model.embedding.weight.copy_(lm_encoder.embedding.weight)
        return model, "bag_of_embeddings", config, [{"params": model.parameters(),
                                                      "lr": boe.lr}]
    settings = settings_of(params, variant)
    encoder = EncoderConfig.of(params.model, vocab_size)
    if settings.weight_dropout is not None:
        encoder = replace(encoder, weight_dropout=settings.weight_dropout)
    backward = variant == BACKWARD_VARIANT
    common = params.classifier
    grad_len = common.max_len if common.bpt3c else None
    model = RNNClassifier(encoder, n_classes, settings.head_dropout, settings.pooling, backward,
                          grad_len, common.bptt)
    if variant in ("rnn_pretrained", BACKWARD_VARIANT):
        direction = "backward" if backward else "forward"
        lm_encoder = pretrained_encoder(lm_path, params, vocab_size, vocab_sha256, direction)
        if settings.from_language_model == "encoder":
            model.encoder.load_state_dict(lm_encoder.state_dict())
        else:  # the word embeddings alone; the RNN layers keep their random init
            model.encoder.embedding.load_state_dict(lm_encoder.embedding.state_dict())
    config = {"encoder": encoder_dict(encoder), "n_classes": n_classes,
              "head_dropout": settings.head_dropout, "pooling": settings.pooling,
              "backward": backward}
    if grad_len is not None:  # BPT3C; without it, checkpoints are as they always were
        config.update(grad_len=grad_len, bptt=common.bptt)
    return model, "rnn_classifier", config, rnn_param_groups(model, settings)


def rnn_param_groups(model: RNNClassifier, settings: RNNClassifierParams,
                     lr_scale: float = 1.0) -> list[dict]:
    """Discriminative learning rates: lower layers (more general features) move slower."""
    layer_groups = model.layer_groups()
    top = len(layer_groups) - 1
    return [{"params": params_,
             "lr": lr_scale * settings.lr / settings.layer_lr_decay ** (top - i)}
            for i, params_ in enumerate(layer_groups)]


def gradual_unfreezing(model: RNNClassifier) -> Callable[[int], None]:
    """Epoch 1 trains the head only; each later epoch unfreezes the next group down."""
    layer_groups = model.layer_groups()

    def unfreeze(epoch: int) -> None:
        for i, params_ in enumerate(layer_groups):
            for param in params_:
                param.requires_grad_(i >= len(layer_groups) - epoch)

    return unfreeze


@dataclass
class Trained:
    model: nn.Module
    kind: str  # the checkpoint kind
    config: dict  # what rebuilds the model from its checkpoint
    result: FitResult
    read_len: int | None  # tokens read per review (None: whole reviews, BPT3C)


def train_classifier(variant: str, params: Params, info: dict, lm_path: Path, train: Corpus,
                     valid: Corpus, runtime: Runtime, desc: str,
                     on_epoch: Callable[[int, dict], None] | None = None,
                     checkpoint: Checkpointing | None = None,
                     unlabeled: Corpus | None = None) -> Trained:
    """``variant`` built by :func:`build` and trained with the shared loop: AdamW, one-cycle
    schedule, early stopping on valid accuracy (the best epoch's weights are kept).
    ``unlabeled``: text for virtual adversarial training, where the variant's settings ask
    for it."""
    torch.manual_seed(params.classifier_seed)
    model, kind, config, groups = build(variant, params, info["vocab_size"],
                                        info["vocab_sha256"], len(info["label_names"]), lm_path)
    model.to(runtime.device)
    common = params.classifier
    settings = settings_of(params, variant)
    batch_size = getattr(settings, "batch_size", common.batch_size)
    read_len = None if common.bpt3c else common.max_len  # BPT3C reads whole reviews
    task = ClassifierTask(train, valid, batch_size, read_len, params.classifier_seed,
                          runtime.device, unlabeled=unlabeled, **regularization(settings))
    optimizer = adamw(groups, weight_decay=settings.weight_decay)
    scheduler = one_cycle(optimizer, settings.epochs * task.steps_per_epoch)
    result = fit(model, task, optimizer, scheduler, runtime, epochs=settings.epochs,
                 clip=common.clip, monitor="valid_accuracy", higher_is_better=True,
                 patience=common.patience, desc=desc, on_epoch=on_epoch,
                 on_epoch_start=gradual_unfreezing(model)
                 if getattr(settings, "gradual_unfreezing", False) else None,
                 checkpoint=checkpoint)
    return Trained(model, kind, config, result, read_len)


def fine_tune_on_labels(trained: Trained, variant: str, params: Params, labeled: Corpus,
                        valid: Corpus, runtime: Runtime, desc: str,
                        on_epoch: Callable[[int, dict], None] | None = None) -> dict:
    """Self-training's last step (``self_training.gold_epochs``): the student, trained on
    labeled + pseudo-labeled reviews, trains on the labeled ones alone, at
    ``self_training.gold_lr_scale`` times its usual learning rates (one-cycle, early
    stopping on valid), so the pseudo-labels' errors are not what it learns last. The result
    is kept only if it beats the student's valid accuracy; otherwise the student's weights
    are put back. ``params``: the run's own settings, not the student's."""
    settings = settings_of(params, variant)
    scale = params.self_training.gold_lr_scale
    model = trained.model
    student = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.requires_grad_(True)  # gradual unfreezing may have left groups frozen
    groups = (rnn_param_groups(model, settings, scale) if isinstance(model, RNNClassifier)
              else [{"params": model.parameters(), "lr": scale * settings.lr}])
    batch_size = getattr(settings, "batch_size", params.classifier.batch_size)
    task = ClassifierTask(labeled, valid, batch_size, trained.read_len, params.classifier_seed,
                          runtime.device, **regularization(settings))  # no text: no VAT
    optimizer = adamw(groups, weight_decay=settings.weight_decay)
    epochs = params.self_training.gold_epochs
    result = fit(model, task, optimizer, one_cycle(optimizer, epochs * task.steps_per_epoch),
                 runtime, epochs=epochs, clip=params.classifier.clip, monitor="valid_accuracy",
                 higher_is_better=True, patience=params.classifier.patience, desc=desc,
                 on_epoch=on_epoch)
    kept = result.best["valid_accuracy"] > trained.result.best["valid_accuracy"]
    if not kept:
        model.load_state_dict(student)
    return {"kept": kept, "valid_accuracy": result.best["valid_accuracy"],
            "best_epoch": result.best_epoch, "epochs": len(result.history),
            "seconds": result.seconds, "history": result.history}


def student_params(params: Params) -> Params:
    """A self-training student's settings: classifier.<variant>'s, with self_training's
    batch size, patience and RNN epochs (it trains on many more reviews)."""
    student = params.self_training
    return with_overrides(params, {
        "classifier.batch_size": student.batch_size,
        "classifier.patience": student.patience,
        "classifier.bag_of_embeddings.batch_size": student.batch_size,
        "classifier.bag_of_embeddings_lm.batch_size": student.batch_size,
        "classifier.rnn_pretrained.epochs": student.rnn_epochs,
        "classifier.rnn_scratch.epochs": student.rnn_epochs}, "params.yaml (self_training)")


def pseudo_labeled(path: Path, data_dir: Path, info: dict) -> Corpus:
    """The unlabeled reviews the pseudo_label stage kept, with the teacher's labels."""
    frame = read_input(path, "pseudo-labels", pd.read_parquet)
    unlabeled = Corpus.load(data_dir, "unlabeled")
    if frame.attrs.get("vocab_sha256") != info["vocab_sha256"] or (
            frame.attrs.get("unlabeled_documents") != len(unlabeled)):
        raise PipelineError(f"{path} was made from other data than {data_dir}: rerun "
                            "pseudo_label (dvc repro)")
    rows, labels = frame["unlabeled_row"].to_numpy(), frame["label"].to_numpy()
    if len(frame) and (labels.min() < 0 or labels.max() >= len(info["label_names"])):
        raise PipelineError(f"{path} has labels outside 0..{len(info['label_names']) - 1}")
    pseudo = unlabeled.take(rows)
    return Corpus(pseudo.ids, pseudo.offsets, labels.astype(np.int64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("variant", choices=(*VARIANTS, BACKWARD_VARIANT))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data/vocab")
    parser.add_argument("--lm", default="models/lm.pt")
    parser.add_argument("--out-dir", default="models")
    parser.add_argument("--reports", default="reports")
    parser.add_argument("--pseudo-labels", default=None, metavar="PARQUET",
                        help="self-training: also train on these (the pseudo_label stage's); "
                             "the run is named <variant>_self_trained")
    args = parser.parse_args()
    params = load_params(args.params)
    variant = args.variant
    data_dir = Path(args.data)
    info = read_json(require(data_dir / "info.json", "vocabulary"), VOCAB_INFO_KEYS)
    require(data_dir / "vocab.json", "vocabulary")  # the logged model needs it after training
    runtime = setup(params.runtime)
    if distributed.is_main():
        tracking.connect()  # fail fast, before any training

    labeled = Corpus.load(data_dir, "train").labeled_sample(
        params.classifier.train_examples, params.classifier_seed)
    valid = Corpus.load(data_dir, "valid")
    name, train, sections = variant, labeled, ("data", "vocab", "classifier", "runtime")
    if variant != "bag_of_embeddings":  # the others depend on the encoder settings too
        sections = ("data", "vocab", "model", "classifier", "runtime")
    own_params = params  # a student's last step (gold_epochs) trains with these
    student = args.pseudo_labels is not None
    if student:  # a self-training student: labeled + pseudo-labeled
        params = student_params(params)
        pseudo = pseudo_labeled(Path(args.pseudo_labels), data_dir, info)
        name, train = variant + SELF_TRAINED, Corpus.concat(labeled, pseudo)
        sections = (*sections[:-1], "self_training", "runtime")
    model_path = Path(args.out_dir) / f"{variant}.pt"
    curve_path = Path(args.reports) / "curves" / f"{variant}.csv"
    inputs = [require(Path(args.lm), "language model")] if variant in LANGUAGE_MODEL_OF else []
    if student:
        inputs.append(Path(args.pseudo_labels))
    checkpoint = Checkpointing.for_stage(  # all sections but runtime
        name, flatten(params, sections[:-1]), params.runtime, info, inputs)

    gold_epochs = params.self_training.gold_epochs if student else 0
    unlabeled = None  # read only when used (~20 M token ids)
    if regularization(settings_of(params, variant)).get("virtual_epsilon", 0.0) > 0:
        unlabeled = text_alone(data_dir)
        if distributed.is_main():
            print(f"[{name}] virtual adversarial training on {len(unlabeled):,} reviews of text "
                  "alone (the unlabeled and train splits)")

    def train_model(on_epoch: Callable[[int, dict], None] | None,
                    on_gold_epoch: Callable[[int, dict], None] | None) -> tuple[Trained, dict]:
        trained = train_classifier(variant, params, info, Path(args.lm), train, valid, runtime,
                                   name, on_epoch, checkpoint, unlabeled)
        gold = {} if not gold_epochs else fine_tune_on_labels(
            trained, variant, own_params, labeled, valid, runtime, f"{name} (labeled only)",
            on_gold_epoch)
        return trained, gold

    if not distributed.is_main():  # torchrun: rank 0 logs and writes the outputs
        train_model(None, None)
        return
    with tracking.stage_run(params, f"train_{name}", f"clf:{name}", sections) as run:
        import mlflow

        mlflow.set_tag("variant", name)
        trained, gold = train_model(lambda e, m: tracking.log_epoch(m, e),
                                    lambda e, m: tracking.log_epoch(m, e, "labeled_only_"))
        result = trained.result
        summary = {"variant": name, "valid_accuracy": result.best["valid_accuracy"],
                   "best_epoch": result.best_epoch, "epochs": len(result.history),
                   "train_seconds": result.seconds, "mlflow_run_id": run.info.run_id,
                   "train_examples": len(labeled)}  # labeled by people: the x of few-label plots
        history = pd.DataFrame(result.history)
        if student:
            summary["pseudo_labeled"] = len(train) - len(labeled)
        if gold:  # the last step on the labeled reviews alone: its epochs follow in the curve
            summary["labeled_only"] = {k: v for k, v in gold.items() if k != "history"}
            summary["train_seconds"] += gold["seconds"]
            if gold["kept"]:
                summary["valid_accuracy"] = gold["valid_accuracy"]
            history = pd.concat([history.assign(phase="labeled + pseudo-labeled"),
                                 pd.DataFrame(gold["history"]).assign(
                                     epoch=lambda f: f["epoch"] + len(result.history),
                                     phase="labeled only")], ignore_index=True)
        summary_path = Path(args.reports) / "train" / f"{variant}.json"
        # the model and its reports appear together, once MLflow has them too
        with atomic_outputs(model_path, curve_path, summary_path) as (model_tmp, curve_tmp,
                                                                      summary_tmp):
            save_checkpoint(model_tmp, trained.kind, trained.config, trained.model,
                            {"label_names": info["label_names"], "max_len": trained.read_len,
                             "variant": name, "vocab_sha256": info["vocab_sha256"]})
            history.to_csv(curve_tmp, index=False)
            write_json(summary_tmp, summary)
            from pipeline.serving import log_classifier_model  # imports mlflow.pyfunc

            log_classifier_model(name, model_tmp, data_dir / "vocab.json",
                                 params.tokenize.lowercase)
            mlflow.log_metrics({"valid_accuracy": summary["valid_accuracy"],
                                "train_seconds": summary["train_seconds"],
                                "best_epoch": result.best_epoch})
            mlflow.log_artifact(str(model_tmp), artifact_path="model")
            mlflow.log_artifact(str(curve_tmp), artifact_path="curves")
    checkpoint.discard()  # outputs are safely written: nothing left to resume
    print(f"[{name}] best valid accuracy {summary['valid_accuracy']:.4f} "
          f"(epoch {result.best_epoch}, {summary['train_seconds']:.0f} s)")
    if gold:
        print(f"[{name}] then on the labeled reviews alone: valid accuracy "
              f"{gold['valid_accuracy']:.4f} ({'kept' if gold['kept'] else 'not kept'}: the "
              f"student's was {result.best['valid_accuracy']:.4f})")


if __name__ == "__main__":
    run_stage("train", main)
