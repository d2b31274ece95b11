"""Does a classifier fine-tuned on ``max_len`` tokens per review score better reading more of
the long reviews at inference?

One-off experiment, not a stage (2026-12-07). The train stage saves each RNN classifier with
the ``classifier.max_len`` it was fine-tuned on, and inference truncates to it (the first
quarter and last three quarters: pipeline.batching.truncate). This rescores only the reviews
longer than that (the others read the same either way) at each of ``--lengths`` tokens
("all": whole reviews), on valid and on test, for each classifier and for the mean of their
class probabilities (the ensemble stage's), and prints how many of those long reviews each
gets right:

    python docs/experiments/inference_length.py <finished run's root> <classifier.pt>... \\
        [--lengths 1200 1600 all]

About 3 minutes a pair of 800-token classifiers on the 2-core bf16 EPYC (IMDB: 749 test and
98 valid reviews longer than 800 tokens). Results: reports/studies/longer_lm_ensemble.md
("Reading whole reviews at inference").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the pipeline package
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts beside this one

from compare_with_committed_run import TestSplit  # noqa: E402

from pipeline.batching import Corpus  # noqa: E402
from pipeline.inference import for_inference  # noqa: E402
from pipeline.models import load_checkpoint  # noqa: E402
from pipeline.tasks import predict_proba  # noqa: E402


def length(value: str) -> int | None:
    return None if value == "all" else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run's root (data/vocab)")
    parser.add_argument("classifiers", type=Path, nargs="+", help="RNN classifier files")
    parser.add_argument("--lengths", type=length, nargs="+", default=[1200, 1600, None])
    args = parser.parse_args()
    data = args.run / "data/vocab"
    split = TestSplit.load(data)
    corpora = {"valid": Corpus.load(data, "valid"), "test": split.test}

    models = {}
    for path in args.classifiers:
        models[path] = load_checkpoint(path, "rnn_classifier", split.info["vocab_size"],
                                       split.info["vocab_sha256"])
    trained_lens = {blob["max_len"] for _, blob in models.values()}
    if len(trained_lens) != 1:
        raise SystemExit(f"the classifiers were fine-tuned on different lengths: {trained_lens}")
    trained_len = trained_lens.pop()
    # only the reviews longer than that read differently at another length
    long = {name: corpus.take(np.flatnonzero(corpus.lengths > trained_len))
            for name, corpus in corpora.items()}

    lengths = [trained_len, *args.lengths]
    right: dict[tuple[str, str, int | None], int] = {}
    ensemble: dict[tuple[str, int | None], np.ndarray] = {}
    for path, (model, _) in models.items():
        model = for_inference(model, split.runtime)
        for split_name, corpus in long.items():
            for max_len in lengths:
                proba = predict_proba(model, corpus, 64, max_len, split.runtime.device,
                                      split.runtime)
                right[(str(path), split_name, max_len)] = int(
                    (proba.argmax(1) == corpus.labels).sum())
                key = (split_name, max_len)
                ensemble[key] = ensemble.get(key, 0) + proba / len(models)
    for (split_name, max_len), proba in ensemble.items():
        right[("mean of the classifiers", split_name, max_len)] = int(
            (proba.argmax(1) == long[split_name].labels).sum())

    print(f"right of the {len(long['valid'])} valid / {len(long['test'])} test reviews longer than "
          f"{trained_len} tokens, reading at most:")
    print("| classifier | " + " | ".join(f"{n or 'all'} tokens" for n in lengths) + " |")
    print("|---|" + "---|" * len(lengths))
    for name in [*map(str, args.classifiers), "mean of the classifiers"]:
        cells = [f"{right[(name, 'valid', n)]} / {right[(name, 'test', n)]}" for n in lengths]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
