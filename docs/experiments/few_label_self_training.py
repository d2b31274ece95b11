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
   fresh students train on its pseudo-labels (the 1,000 labeled reviews always stay).

Test accuracy is computed once, at the end, for every teacher and student (the figures the
few-label target is stated in); valid accuracy is what selection used. Nothing here reads
test before that. Prints one ``RESULT`` JSON line. One-off exploration (round 1 with one
teacher is now in the pipeline: params.yaml ``self_training``, README "Self-training"):

    python docs/experiments/few_label_self_training.py --lm models/lm.pt --seed 42
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from pipeline.batching import Corpus
from pipeline.config import Params, load_params, with_overrides
from pipeline.io import read_json
from pipeline.runtime import Runtime, setup
from pipeline.stages.pseudo_label import confident, pool_rows
from pipeline.stages.train import settings_of, train_classifier
from pipeline.studies import study_points
from pipeline.tasks import predict_proba

TEACHERS = ("rnn_pretrained", "bag_of_embeddings_lm", "both")
BASELINES = ("bag_of_embeddings", "rnn_scratch")


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


def probabilities(model: torch.nn.Module, corpus: Corpus, params: Params,
                  runtime: Runtime) -> np.ndarray:
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
    baselines = {}
    for variant in args.baselines:
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
    report["test_reviews"] = len(test)
    report["seconds"] = round(time.perf_counter() - started)
    print("RESULT", json.dumps(report))


if __name__ == "__main__":
    main()
