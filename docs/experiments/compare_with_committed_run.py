"""Classifiers trained after the committed run, against that run's classifiers.

evaluate scores every classifier of one run together; this script adds saved classifiers
trained later (``--model``, repeatable: the n-gram baselines of ``dvc repro train_ngrams``,
a self-training student under models/self_trained/, any checkpoint of the train stage)
without retraining the committed ones. It scores each on the test set and compares it with
the test predictions the committed run left (reports/plots/predictions_<variant>.csv: one
row per test review, in test order) on evaluate's own bootstrap resamples (params.yaml
evaluate.seed and bootstrap_samples), so the differences are paired as in
reports/comparison.md. One Δ column per ``--vs`` (a committed variant or a scored model;
default: the first ``--model``). ``--average`` adds one more row: the mean class
probabilities of all ``--model`` classifiers (an RNN and an n-gram model make different
mistakes: Mesnil et al. 2015's ensemble of an RNN LM and NBSVM). ``--hybrid-with`` one more
saved model (an n-gram baseline) adds the row the ensemble stage reports as
``<ensemble>_with_<n-gram>``: the mean of that model's probabilities and the ``--average``
row's, half each (not equal shares of all). Run from the project root, e.g.:

    python docs/experiments/compare_with_committed_run.py --model models/nb_logreg.pt
    python docs/experiments/compare_with_committed_run.py \
        --model models/self_trained/rnn_pretrained.pt --model models/nb_logreg.pt \
        --vs bag_of_embeddings --vs nb_logreg
    python docs/experiments/compare_with_committed_run.py \
        --model models/self_trained/rnn_pretrained.pt --model models/nb_logreg.pt \
        --average --vs nb_logreg
    python docs/experiments/compare_with_committed_run.py \
        --model <out>/rp_lm12.pt --model <out>/rpb_lm12.pt --average \
        --hybrid-with models/nb_logreg.pt --predictions <empty dir> --vs nb_logreg
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.batching import Corpus
from pipeline.config import DEFAULT_PARAMS, SELF_TRAINED, load_params
from pipeline.errors import PipelineError
from pipeline.inference import saved_classifier_proba
from pipeline.io import read_json
from pipeline.metrics import accuracy_interval, bootstrap_indices, difference_interval
from pipeline.runtime import Runtime, setup
from pipeline.stages.evaluate import hybrid_name
from pipeline.stages.self_training import STUDENTS_DIR


def model_name(path: Path) -> str:
    """The variant a model file holds, as the reports name it (students: *_self_trained)."""
    return path.stem + (SELF_TRAINED if path.parent.name == STUDENTS_DIR else "")


@dataclass(frozen=True)
class TestSplit:
    """What scoring saved classifiers needs: the test split of a vocab stage output, its
    vocabulary's info.json, the runtime they run on, and evaluate's bootstrap resamples
    (params.yaml's evaluate.seed and bootstrap_samples) to pair them on."""

    test: Corpus
    info: dict
    runtime: Runtime
    indices: np.ndarray

    @classmethod
    def load(cls, data: Path, params_file: Path = DEFAULT_PARAMS) -> TestSplit:
        params = load_params(params_file)
        test = Corpus.load(data, "test")
        return cls(test, read_json(data / "info.json",
                                   ("vocab_sha256", "vocab_size", "label_names")),
                   setup(params.runtime),
                   bootstrap_indices(len(test), params.evaluate.bootstrap_samples,
                                     params.evaluate.seed))

    def proba(self, path: Path) -> tuple[np.ndarray, float]:
        """A saved classifier's class probabilities on the test split, and the seconds taken."""
        return saved_classifier_proba(path.stem, path.parent, self.test, self.info, self.runtime)


def score_saved(data: Path, files: dict[str, Path], params_file: Path = DEFAULT_PARAMS
                ) -> tuple[Corpus, dict[str, np.ndarray], np.ndarray]:
    """The test split of ``data`` (a vocab stage output), each saved classifier's class
    probabilities on it (``files``: a name per model file), and evaluate's bootstrap
    resamples to pair them on."""
    split = TestSplit.load(data, params_file)
    return (split.test, {name: split.proba(path)[0] for name, path in files.items()},
            split.indices)


def committed_correct(predictions: Path, test: Corpus, names: list[str]) -> dict[str, np.ndarray]:
    """Per committed variant: which test reviews it classified right."""
    correct = {}
    for path in sorted(predictions.glob("predictions_*.csv")):
        frame = pd.read_csv(path)
        actual = frame["actual"].map(names.index).to_numpy()
        if len(frame) != len(test) or (actual != test.labels).any():
            raise PipelineError(f"{path} is not in the order of this test set")
        correct[path.stem.removeprefix("predictions_")] = (
            frame["predicted"].to_numpy() == frame["actual"].to_numpy())
    return correct


def comparison_table(correct: dict[str, np.ndarray], against: list[str] | tuple[str, ...],
                     source: dict[str, str], indices: np.ndarray) -> list[str]:
    """A markdown table, best first: each variant's test accuracy and its paired difference
    with each of ``against``, on the bootstrap resamples ``indices``."""
    lines = ["| variant | test accuracy [95% CI] | "
             + " | ".join(f"Δ vs {name} (points) [95% CI]" for name in against) + " |",
             "|---|---|" + "---|" * len(against)]
    for name, right in sorted(correct.items(), key=lambda item: -item[1].mean()):
        low, high = accuracy_interval(right, indices)
        cells = [f"{100 * right.mean():.2f}% [{100 * low:.2f}, {100 * high:.2f}]"]
        for other in against:
            if other == name:
                cells.append("—")
                continue
            diff_low, diff_high = difference_interval(right, correct[other], indices)
            cells.append(f"{100 * (right.mean() - correct[other].mean()):+.2f} "
                         f"[{100 * diff_low:+.2f}, {100 * diff_high:+.2f}]")
        lines.append(f"| {name} ({source[name]}) | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/vocab")
    parser.add_argument("--model", type=Path, action="append", required=True,
                        help="a saved classifier to score (repeatable)")
    parser.add_argument("--vs", action="append",
                        help="a Δ column against this variant (default: the first --model)")
    parser.add_argument("--average", action="store_true",
                        help="also score the mean class probabilities of the --model classifiers")
    parser.add_argument("--hybrid-with", type=Path,
                        help="a saved classifier (an n-gram baseline) to average, half and "
                             "half, with the --average row, as the ensemble stage does")
    parser.add_argument("--predictions", type=Path, default=Path("reports/plots"))
    args = parser.parse_args()
    if args.average and len(args.model) < 2:  # before minutes of scoring, not after
        raise PipelineError("--average needs at least two --model classifiers")
    if args.hybrid_with and not args.average:
        raise PipelineError("--hybrid-with averages with the --average row: add --average")
    split = TestSplit.load(Path(args.data))
    test = split.test
    correct = committed_correct(args.predictions, test, split.info["label_names"])
    source = dict.fromkeys(correct, "committed run")
    named: dict[str, Path] = {}
    models = [*args.model, *([args.hybrid_with] if args.hybrid_with else [])]
    for path in models:  # before minutes of scoring, not after
        name = model_name(path)
        if name in correct or name in named:
            where = (f"the committed run's classifiers ({args.predictions})" if name in correct
                     else f"--model {named[name]}")
            raise PipelineError(f"--model {path}: {name} is already among {where}: copy the "
                                f"file under another name")
        named[name] = path
    scored = {}
    for path in models:
        name = model_name(path)
        scored[name], seconds = split.proba(path)
        correct[name], source[name] = scored[name].argmax(1) == test.labels, str(path)
        print(f"{path}: scored in {seconds:.0f} s")
    if args.average:
        members = [model_name(path) for path in args.model]
        average = "mean(" + " + ".join(members) + ")"
        mean = np.mean([scored[member] for member in members], axis=0)
        correct[average], source[average] = (mean.argmax(1) == test.labels,
                                             "mean class probabilities")
    if args.hybrid_with:
        ngram = model_name(args.hybrid_with)
        hybrid = np.mean([mean, scored[ngram]], axis=0)
        name = hybrid_name(average, ngram)
        correct[name], source[name] = (hybrid.argmax(1) == test.labels,
                                       f"mean of {average} and {ngram}, half each")
    against = args.vs or [model_name(args.model[0])]
    unknown = [name for name in against if name not in correct]
    if unknown:
        raise PipelineError(f"--vs {', '.join(unknown)}: not among {', '.join(correct)}")
    print("\n".join(comparison_table(correct, against, source, split.indices)))


if __name__ == "__main__":
    main()
