"""Few-label test: does an auxiliary language-model loss, or freezing the embeddings,
help ``rnn_pretrained`` fine-tuned on a small labeled sample?

The classifier is built exactly as the train stage builds ``rnn_pretrained`` (encoder
from the LM checkpoint, ``classifier.rnn_pretrained`` settings, the same labeled sample of
``classifier.train_examples`` reviews drawn with the seed, the same one training loop with
early stopping on the valid split). Two changes can be switched on:

* ``--lm-weight G`` (SiATL, Chronopoulou et al. 2019): the loss is the classification
  cross-entropy plus G times the next-word loss of the LM's own softmax (kept from the
  checkpoint and trained along) on the same reviews, which should keep the encoder close
  to a language model while the head is learned from few labels;
* ``--freeze-embeddings``: the word embeddings keep the LM's values;
* ``--embedding-lr-scale S``: the embeddings learn at S times the other layers' LR.

Prints one ``RESULT`` JSON line (best valid accuracy and its epoch). One-off exploration,
not a stage:

    python docs/experiments/few_label_aux_lm.py --params P --lm models/lm.pt --lm-weight 0.1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.batching import Corpus
from pipeline.config import load_params
from pipeline.io import read_json
from pipeline.models import LanguageModel, RNNClassifier, load_checkpoint
from pipeline.runtime import setup
from pipeline.stages.train import build
from pipeline.tasks import ClassifierTask
from pipeline.training import Backward, adamw, fit, one_cycle


class ClassifierWithLMLoss(nn.Module):
    """The classifier; while training it also returns the next-word loss of its reviews."""

    def __init__(self, classifier: RNNClassifier, lm: LanguageModel | None,
                 lm_weight: float) -> None:
        super().__init__()
        self.classifier, self.lm_weight = classifier, lm_weight
        self.adaptive = lm.adaptive if lm is not None else None

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not self.training or self.lm_weight == 0:
            return self.classifier(tokens, lengths)
        out, _ = self.classifier.encoder(tokens)  # the classifier's forward, keeping ``out``
        logits = self.classifier.head(self.classifier.pool(out, lengths, lengths, None))
        steps = torch.arange(tokens.size(1) - 1, device=tokens.device)
        real = steps[None, :] < (lengths[:, None] - 1)  # positions with a real next word
        return logits, self.adaptive(out[:, :-1][real], tokens[:, 1:][real]).loss


class AuxiliaryLossTask(ClassifierTask):
    def __init__(self, *args: object, lm_weight: float) -> None:
        super().__init__(*args)
        self.lm_weight = lm_weight

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...],
             backward: Backward | None = None) -> torch.Tensor:
        if self.lm_weight == 0:  # the model returns logits only: the stage's own loss
            return super().loss(model, batch, backward)
        tokens, lengths, labels = (t.to(self.device) for t in batch)
        logits, lm_loss = model(tokens, lengths)
        return F.cross_entropy(logits.float(), labels) + self.lm_weight * lm_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--lm", type=Path, default=Path("models/lm.pt"))
    parser.add_argument("--data", type=Path, default=Path("data/vocab"))
    parser.add_argument("--lm-weight", type=float, default=0.0)
    parser.add_argument("--freeze-embeddings", action="store_true")
    parser.add_argument("--embedding-lr-scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None, help="default: runtime.seed")
    args = parser.parse_args()
    params = load_params(args.params)
    if args.seed is not None:
        params = params.model_copy(update={
            "runtime": params.runtime.model_copy(update={"seed": args.seed})})
    seed, settings = params.runtime.seed, params.classifier.rnn_pretrained
    runtime = setup(params.runtime)
    info = read_json(args.data / "info.json")
    train = Corpus.load(args.data, "train").labeled_sample(params.classifier.train_examples,
                                                          seed)
    valid = Corpus.load(args.data, "valid")
    # its softmax, for the auxiliary loss (build() takes the encoder from the same file)
    lm = load_checkpoint(args.lm, expect_kind="language_model")[0] if args.lm_weight else None
    torch.manual_seed(seed)
    classifier, _, _, groups = build("rnn_pretrained", params, info["vocab_size"],
                                     info["vocab_sha256"], len(info["label_names"]), args.lm)
    groups[0]["lr"] *= args.embedding_lr_scale  # groups[0]: the embeddings
    if args.freeze_embeddings:
        for param in groups[0]["params"]:
            param.requires_grad_(False)
        groups = groups[1:]
    if lm is not None:
        groups.append({"params": list(lm.adaptive.parameters()), "lr": groups[-1]["lr"]})
    model = ClassifierWithLMLoss(classifier, lm, args.lm_weight).to(runtime.device)
    task = AuxiliaryLossTask(train, valid, params.classifier.batch_size,
                             params.classifier.max_len, seed, runtime.device,
                             lm_weight=args.lm_weight)
    optimizer = adamw(groups, weight_decay=settings.weight_decay)
    scheduler = one_cycle(optimizer, settings.epochs * task.steps_per_epoch)
    started = time.perf_counter()
    result = fit(model, task, optimizer, scheduler, runtime, epochs=settings.epochs,
                 clip=params.classifier.clip, monitor="valid_accuracy", higher_is_better=True,
                 patience=params.classifier.patience, desc=f"lm_weight={args.lm_weight}")
    print("RESULT", json.dumps({
        "lm_weight": args.lm_weight, "freeze_embeddings": args.freeze_embeddings,
        "embedding_lr_scale": args.embedding_lr_scale,
        "seed": seed, "train_examples": len(train),
        "valid_accuracy": result.best["valid_accuracy"], "best_epoch": result.best_epoch,
        "seconds": round(time.perf_counter() - started)}))


if __name__ == "__main__":
    main()
