"""Few-label test: does self-training on the unlabeled reviews close the gap to 85%?

With 1,000 labels the fine-tuned LSTM (``rnn_pretrained``) trails the bags of embeddings,
and neither a linear probe, ULMFiT's learning rates, an auxiliary LM loss nor a stronger
language model changed that (README of this folder). The 50,000 unlabeled reviews have so
far fed only the language model. Self-training (Yarowsky 1995; for text classification
with a pretrained LSTM, e.g. the "noisy student" line of work) uses them for the
classifier too:

1. teachers: ``rnn_pretrained`` and ``bag_of_embeddings_lm`` are trained on the 1,000
   labeled reviews exactly as the train stage trains them with the learning curve's
   ``n1000`` settings (same sample, same loop, early stopping on valid);
2. the teacher (``--teacher``: either model, or the mean of both models' probabilities,
   two views that err differently) labels ``--unlabeled`` unlabeled reviews, and the
   ``--per-class`` most confident reviews of each predicted class are kept;
3. students: a fresh ``rnn_pretrained`` (encoder from the language model again) and a
   fresh ``bag_of_embeddings_lm`` are trained on the 1,000 labeled plus the pseudo-labeled
   reviews (``--student-epochs``, early stopping on the same valid split), so the
   baseline gets the same extra data;
4. with ``--rounds 2`` or more, a student (``--next-teacher``) labels the pool again and
   fresh students train on its pseudo-labels (the 1,000 labeled reviews always stay);
5. with ``--gold-epochs N``, each last-round student is then fine-tuned on the 1,000
   labeled reviews alone (``--gold-lr-scale`` times its usual learning rates, one-cycle,
   early stopping on valid): pseudo-labels as pretraining, the gold labels last, so the
   teacher's errors are the last thing the student unlearns rather than learns. The
   fine-tuned model is kept only if its valid accuracy beats the student's.

Test accuracy is computed once, at the end, for every teacher and student (the figures the
few-label target is stated in); valid accuracy is what selection used. Nothing here reads
test before that. Prints one ``RESULT`` JSON line. One-off exploration (round 1 with one
teacher is now in the pipeline: params.yaml ``self_training``, README "Self-training"):

    python docs/experiments/few_label_self_training.py --lm models/lm.pt --seed 42
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from pipeline.batching import Corpus
from pipeline.config import Params, load_params, with_overrides
from pipeline.io import read_json
from pipeline.runtime import Runtime, setup
from pipeline.stages.pseudo_label import confident, pool_rows
from pipeline.stages.train import settings_of, train_classifier
from pipeline.studies import study_points
from pipeline.tasks import ClassifierTask, predict_proba
from pipeline.training import adamw, fit, one_cycle

TEACHERS = ("rnn_pretrained", "bag_of_embeddings_lm", "both", "tfidf_logreg")
BASELINES = ("bag_of_embeddings", "rnn_scratch", "tfidf_logreg")


class TfidfLogReg:
    """The strong cheap bag-of-words baseline (not a pipeline variant): TF-IDF of the
    token ids' unigrams and bigrams (sublinear tf), logistic regression with C=30 (83.8%
    valid at 1,000 labels, seed 42; C=10 and 100 within 0.1 point)."""

    def __init__(self, train_set: Corpus, max_len: int) -> None:
        self.max_len = max_len
        self.vectorizer = TfidfVectorizer(token_pattern=r"\S+", ngram_range=(1, 2),
                                          sublinear_tf=True)
        features = self.vectorizer.fit_transform(self.texts(train_set))
        self.model = LogisticRegression(C=30, max_iter=3000).fit(features, train_set.labels)

    def texts(self, corpus: Corpus) -> list[str]:
        # the same tokens the other classifiers read: the first max_len of each review
        return [" ".join(map(str, corpus.ids[start:min(end, start + self.max_len)].tolist()))
                for start, end in zip(corpus.offsets[:-1], corpus.offsets[1:], strict=True)]

    def predict_proba(self, corpus: Corpus) -> np.ndarray:
        return self.model.predict_proba(self.vectorizer.transform(self.texts(corpus)))


def train(variant: str, params: Params, info: dict, lm: Path, train_set: Corpus,
          valid: Corpus, runtime: Runtime, epochs: int, desc: str) -> tuple[torch.nn.Module,
                                                                            dict]:
    """``variant`` built and trained as the train stage does, for ``epochs`` epochs."""
    settings = f"classifier.{variant}.epochs"
    params = with_overrides(params, {settings: epochs}, f"{desc} ({settings})")
    trained = train_classifier(variant, params, info, lm, train_set, valid, runtime, desc)
    result = trained.result
    return trained.model, {"valid_accuracy": round(result.best["valid_accuracy"], 4),
                           "best_epoch": result.best_epoch, "seconds": round(result.seconds)}


def gold_fine_tune(variant: str, model: torch.nn.Module, params: Params, labeled: Corpus,
                   valid: Corpus, runtime: Runtime, epochs: int, lr_scale: float,
                   desc: str) -> dict:
    """Continue training ``model`` (in place) on the labeled reviews alone, with the train
    stage's loop and optimizer at ``lr_scale`` times the variant's learning rates."""
    settings = settings_of(params, variant)
    batch_size = getattr(settings, "batch_size", params.classifier.batch_size)
    if variant == "rnn_pretrained":  # the same discriminative rates as build() gives
        layer_groups = model.layer_groups()
        top = len(layer_groups) - 1
        groups = [{"params": group,
                   "lr": lr_scale * settings.lr / settings.layer_lr_decay ** (top - i)}
                  for i, group in enumerate(layer_groups)]
    else:
        groups = [{"params": model.parameters(), "lr": lr_scale * settings.lr}]
    task = ClassifierTask(labeled, valid, batch_size, params.classifier.max_len,
                          params.runtime.seed, runtime.device)
    optimizer = adamw(groups, weight_decay=settings.weight_decay)
    result = fit(model, task, optimizer, one_cycle(optimizer, epochs * task.steps_per_epoch),
                 runtime, epochs=epochs, clip=params.classifier.clip, monitor="valid_accuracy",
                 higher_is_better=True, patience=params.classifier.patience, desc=desc)
    return {"valid_accuracy": round(result.best["valid_accuracy"], 4),
            "best_epoch": result.best_epoch, "seconds": round(result.seconds)}


def probabilities(model: torch.nn.Module | TfidfLogReg, corpus: Corpus, params: Params,
                  runtime: Runtime) -> np.ndarray:
    if isinstance(model, TfidfLogReg):
        return model.predict_proba(corpus)
    return predict_proba(model, corpus, 256, params.classifier.max_len, runtime.device, runtime)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return round(float((probs.argmax(1) == labels).mean()), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--point", default="n1000", help="studies.learning_curve point")
    parser.add_argument("--lm", type=Path, default=Path("models/lm.pt"))
    parser.add_argument("--data", type=Path, default=Path("data/vocab"))
    parser.add_argument("--teacher", choices=TEACHERS, default="both")
    parser.add_argument("--unlabeled", type=int, default=20000,
                        help="unlabeled reviews the teacher labels (a seeded random sample)")
    parser.add_argument("--per-class", type=int, default=5000)
    parser.add_argument("--student-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="default: runtime.seed")
    parser.add_argument("--max-test", type=int, default=None, help="quick checks only")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of self-training: each round's student labels the next's")
    parser.add_argument("--next-teacher", choices=TEACHERS[:2], default="rnn_pretrained",
                        help="the student that labels the pool for the next round")
    parser.add_argument("--early-students", choices=TEACHERS, default="both",
                        help="students trained in rounds before the last (the last trains "
                             "both): --next-teacher alone saves the other's time")
    parser.add_argument("--only-used-teachers", action="store_true",
                        help="train only the teacher(s) --teacher names (saves time on reruns)")
    parser.add_argument("--baselines", nargs="*", default=[], choices=BASELINES,
                        help="also train these on the labeled reviews only and report their "
                             "test accuracy (the few-label target's comparison)")
    parser.add_argument("--gold-epochs", type=int, default=0,
                        help="then fine-tune each last-round student on the labeled reviews "
                             "alone for up to this many epochs (0: off)")
    parser.add_argument("--gold-lr-scale", type=float, default=0.1,
                        help="--gold-epochs' learning rates: this times the variant's")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=YAML",
                        help="more overrides, after the point's (quick checks)")
    args = parser.parse_args()
    if args.rounds > 1 and args.early_students not in ("both", args.next_teacher):
        parser.error("--early-students must include --next-teacher")
    base = load_params(args.params)
    point = study_points(base, "learning_curve", args.params)[args.point]
    overrides = dict(point.set)
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    if args.seed is not None:
        overrides["runtime.seed"] = args.seed
    params = with_overrides(base, overrides, f"{args.params} + studies.learning_curve.{args.point}")
    seed = params.runtime.seed
    runtime = setup(params.runtime)
    info = read_json(args.data / "info.json")
    labeled = Corpus.load(args.data, "train").labeled_sample(params.classifier.train_examples,
                                                             seed)
    valid = Corpus.load(args.data, "valid")
    # --max-test: a stratified sample (test is stored class by class)
    test = Corpus.load(args.data, "test").labeled_sample(args.max_test, seed)
    unlabeled = Corpus.load(args.data, "unlabeled")
    pool = unlabeled.take(pool_rows(len(unlabeled), args.unlabeled, seed))
    started = time.perf_counter()
    report: dict = {"seed": seed, "labeled": len(labeled), "teacher": args.teacher,
                    "unlabeled": len(pool), "per_class": args.per_class,
                    "student_epochs": args.student_epochs, "rounds": args.rounds}

    variants = ("rnn_pretrained", "bag_of_embeddings_lm")
    teachers, pool_probs, valid_probs = {}, {}, {}
    for variant in variants:
        if args.teacher not in (variant, "both") and args.only_used_teachers:
            continue
        epochs = settings_of(params, variant).epochs
        model, report[f"teacher_{variant}"] = train(variant, params, info, args.lm, labeled,
                                                    valid, runtime, epochs, f"teacher {variant}")
        teachers[variant] = model
        valid_probs[variant] = probabilities(model, valid, params, runtime)
        if args.teacher in (variant, "both"):
            pool_probs[variant] = probabilities(model, pool, params, runtime)
    if args.teacher == "tfidf_logreg" or "tfidf_logreg" in args.baselines:
        tfidf_started = time.perf_counter()
        tfidf = TfidfLogReg(labeled, params.classifier.max_len)
        valid_accuracy = accuracy(tfidf.predict_proba(valid), valid.labels)
        entry = {"valid_accuracy": valid_accuracy,
                 "seconds": round(time.perf_counter() - tfidf_started)}
        if args.teacher == "tfidf_logreg":
            teachers["tfidf_logreg"], report["teacher_tfidf_logreg"] = tfidf, entry
            pool_probs["tfidf_logreg"] = tfidf.predict_proba(pool)
    baselines = {}
    if "tfidf_logreg" in args.baselines:
        baselines["tfidf_logreg"], report["baseline_tfidf_logreg"] = tfidf, dict(entry)
    for variant in (v for v in args.baselines if v != "tfidf_logreg"):
        epochs = settings_of(params, variant).epochs
        baselines[variant], report[f"baseline_{variant}"] = train(
            variant, params, info, args.lm, labeled, valid, runtime, epochs, f"baseline {variant}")
    if len(valid_probs) == 2:
        report["teacher_both_valid_accuracy"] = accuracy(
            np.mean(list(valid_probs.values()), axis=0), valid.labels)
    teacher_probs = np.mean(list(pool_probs.values()), axis=0)
    # ten times the examples: the n1000 point's small batches and long patience are not needed
    student_params = with_overrides(params, {"classifier.batch_size": 64,
                                             "classifier.patience": 2,
                                             "classifier.bag_of_embeddings_lm.batch_size": 64},
                                    "student settings")
    rounds: dict[str, dict[str, torch.nn.Module]] = {"baseline": baselines, "teacher": teachers}
    for r in range(1, args.rounds + 1):
        name = "student" if r == 1 else f"student{r}"  # round 1 keeps the first runs' keys
        chosen, pseudo_labels = confident(teacher_probs, args.per_class)
        pseudo = pool.take(chosen)
        pseudo = Corpus(pseudo.ids, pseudo.offsets, pseudo_labels.astype(labeled.labels.dtype))
        report["pseudo_labels" if r == 1 else f"pseudo_labels{r}"] = {
            "count": len(pseudo), "per_class": np.bincount(pseudo.labels).tolist(),
            "min_probability": [
                round(float(teacher_probs[chosen[pseudo_labels == c], c].min()), 4)
                for c in range(teacher_probs.shape[1])]}
        train_set = Corpus.concat(labeled, pseudo)
        rounds[name] = {}
        trained_now = variants if r == args.rounds or args.early_students == "both" else (
            args.early_students,)
        for variant in trained_now:
            epochs = args.student_epochs if variant == "rnn_pretrained" else \
                settings_of(params, variant).epochs
            rounds[name][variant], report[f"{name}_{variant}"] = train(
                variant, student_params, info, args.lm, train_set, valid, runtime, epochs,
                f"{name} {variant}")
        if r < args.rounds:  # this round's student labels the pool for the next one
            teacher_probs = probabilities(rounds[name][args.next_teacher], pool, params,
                                          runtime)
    if args.gold_epochs:
        report["gold_epochs"], report["gold_lr_scale"] = args.gold_epochs, args.gold_lr_scale
        last = name
        rounds["gold"] = {}
        for variant, student in rounds[last].items():
            model = copy.deepcopy(student)
            report[f"gold_{variant}"] = gold_fine_tune(
                variant, model, params, labeled, valid, runtime, args.gold_epochs,
                args.gold_lr_scale, f"gold {variant}")
            rounds["gold"][variant] = model
            # selection on valid: the fine-tuned model only if it beats the student there
            better = (report[f"gold_{variant}"]["valid_accuracy"]
                      > report[f"{last}_{variant}"]["valid_accuracy"])
            report[f"gold_selected_{variant}"] = {"fine_tuned": better}

    # test, once, at the end
    for name, models in rounds.items():
        test_probs = {}
        for variant, model in models.items():
            test_probs[variant] = probabilities(model, test, params, runtime)
            report[f"{name}_{variant}"]["test_accuracy"] = accuracy(test_probs[variant],
                                                                    test.labels)
        if len(test_probs) == 2 and name != "baseline":
            report[f"{name}_both_test_accuracy"] = accuracy(
                np.mean(list(test_probs.values()), axis=0), test.labels)
    for variant, selected in ((k[len("gold_selected_"):], v) for k, v in list(report.items())
                              if k.startswith("gold_selected_")):
        source = "gold" if selected["fine_tuned"] else last
        selected["test_accuracy"] = report[f"{source}_{variant}"]["test_accuracy"]
    report["test_reviews"] = len(test)
    report["seconds"] = round(time.perf_counter() - started)
    print("RESULT", json.dumps(report))


if __name__ == "__main__":
    main()
