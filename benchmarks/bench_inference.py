"""RNN classifier inference: length-bucketed ``predict_proba`` vs unbucketed batches.

Project ("A"): ``pipeline.tasks.predict_proba`` as the evaluate stage calls it (batches of
256 reviews of similar length, truncated to ``classifier.max_len``, or to the checkpoint's
``max_len``: whole reviews for a BPT3C classifier, bf16 autocast where the CPU has it, via
``pipeline.runtime.setup``, and the model loaded as evaluate loads it,
``pipeline.inference.for_inference``: an LSTM's weights in bf16 there). Reference ("B"):
the same model, the same
collate/truncation and autocast, but batches taken in the corpus's original order, so each
batch is padded to its longest review. Where the project's model holds bf16 weights, also C:
its batches with the fp32 weights under autocast, as evaluate ran before 2026-12-06.

Reviews: the test split from a pipeline run (``data/vocab/test_*.npy``, all 25,000) when
it exists, else synthetic reviews whose lengths follow IMDB's (log-normal, mean ~270
tokens, ~17% longer than 400) with random ids. The model is an ``RNNClassifier`` with
params.yaml's encoder, randomly initialised unless ``--checkpoint`` names a trained one
(the weights do not change the cost). Runs alternate A B A B ...; the figures are median
seconds and documents/s of each and the speed-up B / A; target: A <= 60 s for 25,000
reviews on CPU (``seconds_per_25k`` extrapolates when fewer are run).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

# importable as benchmarks.bench_inference too (the tests check its arguments in-process)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
from pipeline.batching import Corpus, bucket_batches, collate  # noqa: E402
from pipeline.config import RuntimeParams, load_params  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.inference import for_inference  # noqa: E402
from pipeline.io import read_json  # noqa: E402
from pipeline.models import EncoderConfig, RNNClassifier, load_checkpoint  # noqa: E402
from pipeline.runtime import Runtime, setup  # noqa: E402
from pipeline.tasks import predict_proba  # noqa: E402

TARGET_SECONDS_25K = 60.0
IMDB_LOG_MEAN, IMDB_LOG_STD = np.log(270.0) - 0.65**2 / 2, 0.65  # test split: mean 265 tokens


def synthetic_corpus(count: int, vocab: int, seed: int = 0) -> Corpus:
    """Reviews with IMDB-like lengths (log-normal) and uniform random word ids."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(IMDB_LOG_MEAN, IMDB_LOG_STD, count), 10, 2600).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(3, vocab, size=int(offsets[-1]), dtype=np.int32)
    return Corpus(ids, offsets, None)


@torch.no_grad()
def unbucketed_proba(model: torch.nn.Module, corpus: Corpus, batch_size: int,
                     max_len: int | None, runtime: Runtime) -> np.ndarray:
    """Class probabilities from batches in corpus order (padded to each batch's longest)."""
    model.eval()
    out: np.ndarray | None = None
    for start in range(0, len(corpus), batch_size):
        indices = np.arange(start, min(start + batch_size, len(corpus)))
        tokens, lengths, _ = collate(corpus, indices, max_len)
        with runtime.autocast():
            logits = model(tokens.to(runtime.device), lengths.to(runtime.device))
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        if out is None:
            out = np.zeros((len(corpus), probs.shape[1]), dtype=np.float32)
        out[indices] = probs
    assert out is not None, "empty corpus"
    return out


def padded_tokens(lengths: np.ndarray, batches: list[np.ndarray]) -> int:
    """Token positions the RNN runs over: each batch is as long as its longest review."""
    return int(sum(len(b) * lengths[b].max() for b in batches))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None,
                        help="a vocab stage output with test_*.npy (default: data/vocab "
                             "when a pipeline run made it, else synthetic reviews)")
    parser.add_argument("--synthetic", action="store_true", help="use synthetic reviews")
    parser.add_argument("--n", type=whole_number(1), default=None,
                        help="reviews (default: all 25,000 test reviews / 25,000 synthetic)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a trained rnn_classifier checkpoint (default: random weights)")
    parser.add_argument("--batch-size", type=whole_number(1), default=256,
                        help="as the evaluate stage")
    # the bounds of runtime.threads in params.yaml, where 0 means one per core
    parser.add_argument("--threads", type=whole_number(0, 256), default=2,
                        help="torch intra-op threads (0: one per core)")
    parser.add_argument("--repeats", type=whole_number(1), default=1,
                        help="interleaved A/B repeats (1 keeps 25k reviews under ~3 min)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 reviews, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeats = min(args.n or 1_000, 1_000), 1
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; problems with its inputs are one line (exit 1), as in the stages."""
    return run_benchmark(benchmark, parse_args(argv))


def benchmark(args: argparse.Namespace) -> None:
    params = load_params(REPO / "params.yaml")
    runtime = setup(RuntimeParams(device="cpu", threads=args.threads,
                                  precision=params.runtime.precision, seed=params.runtime.seed))
    data = args.data or REPO / "data" / "vocab"
    real = not args.synthetic and (data / "test_ids.npy").is_file()
    if not real and not args.synthetic and args.data is not None:  # only the default falls back
        raise PipelineError(f"{args.data} has no test_ids.npy: give a vocab stage's output "
                            "folder (data/vocab), or --synthetic")
    if real:
        corpus = Corpus.load(data, "test").subset(args.n)
        vocab = int(read_json(data / "info.json", ("vocab_size",))["vocab_size"])
        source = f"{data}/test_*.npy"
    else:
        vocab = params.vocab.max_size
        corpus = synthetic_corpus(args.n or 25_000, vocab)
        source = "synthetic (IMDB-like lengths)"
    # as the train stage reads: whole reviews with BPT3C, else classifier.max_len tokens
    max_len: int | None = None if params.classifier.bpt3c else params.classifier.max_len
    if args.checkpoint is not None:
        model, blob = load_checkpoint(args.checkpoint, "rnn_classifier", vocab)
        # the length the model was trained to read; None (BPT3C): whole reviews, as evaluate
        max_len = blob.get("max_len", max_len)
    else:
        torch.manual_seed(params.runtime.seed)
        model = RNNClassifier(EncoderConfig.of(params.model, vocab), 2)
    fp32_model = copy.deepcopy(model).to(runtime.device).eval()
    model = for_inference(model, runtime)  # as evaluate loads it (bf16 weights where exact)
    encoder: EncoderConfig = model.encoder.config  # a checkpoint's may differ from params.yaml
    lengths = corpus.lengths if max_len is None else np.minimum(corpus.lengths, max_len)
    read = "(whole reviews: no truncation)" if max_len is None else f"after truncation to {max_len}"
    log(f"{len(corpus):,} reviews from {source}; {lengths.sum():,} tokens {read}; "
        f"batch {args.batch_size}; threads {torch.get_num_threads()}, precision "
        f"{runtime.describe()['precision']}; {args.repeats} repeat(s)")

    runs = {
        "project": lambda: predict_proba(model, corpus, args.batch_size, max_len,
                                         runtime.device, runtime),
        "reference": lambda: unbucketed_proba(model, corpus, args.batch_size, max_len, runtime),
    }
    if next(model.parameters()).dtype != torch.float32:  # C: the weights evaluate kept before
        runs["fp32_weights"] = lambda: predict_proba(fp32_model, corpus, args.batch_size,
                                                     max_len, runtime.device, runtime)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    outputs: dict[str, np.ndarray] = {}
    for repeat in range(1, args.repeats + 1):
        for name, run in runs.items():
            elapsed, probs = timed(run)
            seconds[name].append(elapsed)
            outputs.setdefault(name, probs)
        log(f"repeat {repeat}/{args.repeats}: " + ", ".join(
            f"{name} {values[-1]:.1f} s" for name, values in seconds.items()))
    agree = float((outputs["project"].argmax(1) == outputs["reference"].argmax(1)).mean())
    max_diff = float(np.abs(outputs["project"] - outputs["reference"]).max())

    real_tokens = int(lengths.sum())
    bucketed = padded_tokens(lengths, bucket_batches(lengths, args.batch_size, None))
    in_order = padded_tokens(lengths, [np.arange(s, min(s + args.batch_size, len(lengths)))
                                       for s in range(0, len(lengths), args.batch_size)])

    def figures(name: str, positions: int) -> dict:
        secs = median(seconds[name])
        return {"seconds": rounded(secs), "docs_per_s": round(len(corpus) / secs),
                "seconds_per_25k": rounded(secs * 25_000 / len(corpus)),
                "samples_s": [rounded(s) for s in seconds[name]],
                "token_positions": positions,
                "padding_fraction": rounded(1 - real_tokens / positions)}

    project = figures("project", bucketed)
    speedup = median(seconds["reference"]) / median(seconds["project"])
    emit("inference", {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {"reviews": len(corpus), "source": source, "real_tokens": real_tokens,
                   "max_len": max_len,  # null: whole reviews (a BPT3C checkpoint)
                   "batch_size": args.batch_size, "vocab": vocab,
                   "cell": encoder.cell, "hidden": encoder.hidden, "layers": encoder.layers,
                   "precision": runtime.describe()["precision"],
                   "threads": torch.get_num_threads(), "repeats": args.repeats,
                   "checkpoint": str(args.checkpoint) if args.checkpoint else None,
                   "quick": args.quick},
        "project": {**project, "what": "pipeline.tasks.predict_proba (length-bucketed)"},
        "reference": {**figures("reference", in_order),
                      "what": "same model, batches in original order (unbucketed)"},
        "speedup": rounded(speedup),
        "speedup_is": "reference seconds / project seconds (medians)",
        "predictions_agree": rounded(agree, 4),
        "max_prob_diff": rounded(max_diff),
        **({"fp32_weights": {**figures("fp32_weights", bucketed),
                             "what": "project's batches, the model's fp32 weights under "
                                     "autocast (evaluate before 2026-12-06)"},
            "weights_speedup": rounded(median(seconds["fp32_weights"])
                                       / median(seconds["project"])),
            "weights_speedup_is": "fp32_weights seconds / project seconds (medians)",
            "weights_max_prob_diff": rounded(float(np.abs(
                outputs["fp32_weights"] - outputs["project"]).max()))}
           if "fp32_weights" in runs else {}),
        "target_seconds_per_25k": TARGET_SECONDS_25K,
        "meets_target": bool(project["seconds_per_25k"] <= TARGET_SECONDS_25K),
        "target_extrapolated": len(corpus) != 25_000,
    })


if __name__ == "__main__":
    sys.exit(main())
