"""N-gram features of the n-gram baselines at prediction time: numpy codes vs the vectorizer.

Project ("A"): ``NgramLogReg.features`` of a model loaded from its file, as the evaluate
and pseudo_label stages load it: the n-grams of each review counted with
``pipeline.ngrams.NgramIndex`` (integer codes, ``searchsorted``, ``unique``), then for
``tfidf_logreg`` the vectorizer's own tf-idf step. Reference ("B"): the fitted
scikit-learn vectorizer's ``transform`` of the same reviews written as text, which builds
every n-gram as a Python string (what ``features`` did before 2026-12-06). Both sides must
give the same sparse matrix, entry for entry.

Models: ``models/nb_logreg.pt`` and ``models/tfidf_logreg.pt`` of a pipeline run (the
``--models`` folder) on its test split (``--data``); ``--quick`` fits both on a few
hundred synthetic reviews instead. Runs alternate A B A B ...; the figures are the
median seconds of each and the speed-up B / A per model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

# importable as benchmarks.bench_ngram_features too (the tests check its arguments)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_inference import synthetic_corpus  # noqa: E402
from benchmarks.common import (  # noqa: E402
    REPO,
    emit,
    log,
    median,
    rounded,
    run_benchmark,
    timed,
    whole_number,
)
from pipeline.batching import Corpus  # noqa: E402
from pipeline.config import NGRAM_BASELINES  # noqa: E402
from pipeline.io import read_json, require  # noqa: E402
from pipeline.ngrams import NgramLogReg, texts  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "vocab",
                        help="a vocab stage output (test_*.npy, info.json)")
    parser.add_argument("--models", type=Path, default=REPO / "models",
                        help="the folder holding nb_logreg.pt and tfidf_logreg.pt")
    parser.add_argument("--repeats", type=whole_number(1), default=3,
                        help="interleaved A/B repeats per model")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: models fitted on synthetic reviews, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; problems with its inputs are one line (exit 1), as in the stages."""
    return run_benchmark(benchmark, parse_args(argv))


def synthetic_models(folder: Path) -> tuple[Corpus, dict[str, Path]]:
    """Both baselines fitted on synthetic reviews (bench_inference's: IMDB-like lengths,
    here over 200 words, labels alternating), saved in ``folder``, and 500 more reviews to
    featurize."""
    def reviews(count: int, seed: int) -> Corpus:
        words = synthetic_corpus(count, 200, seed)
        return Corpus(words.ids, words.offsets, np.arange(count) % 2)

    train, valid, test = reviews(300, 1), reviews(100, 2), reviews(500, 3)
    paths = {}
    for name, weighting in NGRAM_BASELINES.items():
        model, _ = NgramLogReg.fit(train, valid, weighting, [1.0], 3 if weighting == "nb" else 2,
                                   2, 1000, 0)
        paths[name] = folder / f"{name}.pt"
        model.save(paths[name], {"vocab_sha256": "synthetic"})
    return test, paths


def same_matrix(a: object, b: object) -> bool:
    return (a.shape == b.shape and a.dtype == b.dtype  # type: ignore[attr-defined]
            and all(np.array_equal(getattr(a, k), getattr(b, k))
                    for k in ("indptr", "indices", "data")))


def benchmark(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        if args.quick:
            corpus, paths = synthetic_models(Path(scratch))
            vocab_sha256, source = "synthetic", "synthetic (500 reviews)"
        else:
            info = read_json(require(args.data / "info.json", "vocabulary"), ("vocab_sha256",))
            vocab_sha256, source = info["vocab_sha256"], f"{args.data}/test_*.npy"
            paths = {name: require(args.models / f"{name}.pt", "model")
                     for name in NGRAM_BASELINES}
            corpus = Corpus.load(args.data, "test")
        results = {}
        for name, path in paths.items():
            model, _ = NgramLogReg.load(path, vocab_sha256)
            runs = {"project": lambda m=model: m.features(corpus),
                    "reference": lambda m=model: m.vectorizer.transform(texts(corpus))}
            seconds: dict[str, list[float]] = {side: [] for side in runs}
            outputs = {}
            for repeat in range(1, args.repeats + 1):
                for side, run in runs.items():
                    elapsed, outputs[side] = timed(run)
                    seconds[side].append(elapsed)
                log(f"{name} repeat {repeat}/{args.repeats}: project "
                    f"{seconds['project'][-1]:.2f} s, reference {seconds['reference'][-1]:.2f} s")
            results[name] = {
                "n_grams": len(model.weights.T), "nonzeros": int(outputs["project"].nnz),
                "project_seconds": rounded(median(seconds["project"])),
                "reference_seconds": rounded(median(seconds["reference"])),
                "samples_s": {side: [rounded(s) for s in values]
                              for side, values in seconds.items()},
                "speedup": rounded(median(seconds["reference"]) / median(seconds["project"])),
                "identical": same_matrix(outputs["project"], outputs["reference"]),
            }
    emit("ngram_features", {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {"reviews": len(corpus), "tokens": int(corpus.offsets[-1]), "source": source,
                   "repeats": args.repeats, "quick": args.quick},
        **results,
        "speedup_is": "reference seconds / project seconds (medians), per model",
        "project": "NgramLogReg.features of the loaded model (NgramIndex)",
        "reference": "the fitted vectorizer's transform of the reviews as text",
    })


if __name__ == "__main__":
    sys.exit(main())
