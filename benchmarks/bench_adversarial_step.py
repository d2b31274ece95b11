"""Adversarial training step of the RNN classifiers: the project's split backward vs the
mean back-propagated once.

Project ("A"): one training step as :func:`pipeline.training.fit` takes it with
``classifier.rnn_*.adversarial_epsilon`` > 0: ``ClassifierTask.loss`` back-propagates the
clean half of the loss in the same pass that finds the perturbation (``backward``), then
fit back-propagates the perturbed half. Reference ("B"): the formulation it replaced
(before 2026-12-04), the same loss and gradients: the perturbation from
``torch.autograd.grad`` with the clean graph kept, then one backward of the mean of both
losses (through the clean graph a second time). Also C: the plain step without
adversarial training, for what adversarial training costs.

Each step is zero_grad, forward(s), backward(s), clipping and AdamW, under bf16 autocast
where the CPU has it (``pipeline.runtime.setup``), on the default ``RNNClassifier``
(params.yaml's encoder, random weights: the cost is the same) and ``classifier_batches``'s
length-bucketed batches of ``classifier.batch_size`` reviews truncated to
``classifier.max_len``: from a pipeline run's train split (``--data``, default
``data/vocab/train_*.npy``) when there is one, else synthetic reviews with IMDB-like
lengths. Rounds alternate A B C over the same batches; figures are the median seconds per
step of each, B / A and C / A; the gradients of A and B on the first batch are compared
(they must agree to rounding).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
from pipeline.batching import Corpus, classifier_batches  # noqa: E402
from pipeline.config import Params, RuntimeParams, load_params  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.io import read_json  # noqa: E402
from pipeline.models import EncoderConfig, RNNClassifier  # noqa: E402
from pipeline.runtime import setup  # noqa: E402
from pipeline.tasks import ClassifierTask, adversarial_loss  # noqa: E402
from pipeline.training import adamw, scaled_backward  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=whole_number(1), default=12,
                        help="batches timed per round (each variant runs the same ones)")
    parser.add_argument("--rounds", type=whole_number(1), default=3, help="A B C rounds")
    parser.add_argument("--epsilon", type=float, default=5.0, help="adversarial_epsilon")
    parser.add_argument("--data", type=Path, default=None,
                        help="a vocab stage output with train_*.npy (default: data/vocab "
                             "when a pipeline run made it, else synthetic reviews)")
    parser.add_argument("--synthetic", action="store_true",
                        help="synthetic reviews even when --data has a train split")
    parser.add_argument("--threads", type=whole_number(0, 256), default=2,
                        help="torch intra-op threads (0: one per core)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 steps of 8 short reviews, 1 round")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; problems with its inputs are one line (exit 1), as in the stages."""
    return run_benchmark(benchmark, parse_args(argv))


def benchmark(args: argparse.Namespace) -> None:
    params = load_params(REPO / "params.yaml")
    runtime = setup(RuntimeParams(device="cpu", threads=args.threads,
                                  precision=params.runtime.precision, seed=params.runtime.seed))
    batch_size, max_len = params.classifier.batch_size, params.classifier.max_len
    data = args.data or REPO / "data" / "vocab"
    # only the default falls back to synthetic reviews: a folder given must hold the split
    if args.data is not None and not (data / "train_ids.npy").is_file():
        raise PipelineError(f"{args.data} has no train_ids.npy: give a vocab stage's output "
                            "folder (data/vocab), or --synthetic")
    corpus, source, vocab = train_corpus(data, params, args.synthetic or args.quick)
    if args.quick:
        batch_size, max_len, args.steps, args.rounds = 8, 40, 2, 1
    # the order training would see (one epoch's shuffled buckets), the first --steps of it
    rng = np.random.default_rng(0)
    batches = [b for _, b in classifier_batches(corpus, batch_size, max_len, rng)][:args.steps]
    torch.manual_seed(params.runtime.seed)
    model = RNNClassifier(EncoderConfig.of(params.model, vocab), 2).to(runtime.device).train()
    optimizer = adamw(model.parameters(), lr=1e-3)
    task = ClassifierTask(corpus, corpus, batch_size, max_len, 0, runtime.device,
                          adversarial_epsilon=args.epsilon)
    clip = params.classifier.clip
    no_scaling = torch.amp.GradScaler(enabled=False)  # bf16 / fp32 on CPU, as in fit
    tokens_per_step = float(np.mean([int(b[1].sum()) for b in batches]))
    log(f"{len(batches)} batches of {batch_size} reviews from {source} (<= {max_len} tokens, "
        f"{tokens_per_step:.0f} tokens per batch on average); precision "
        f"{runtime.describe()['precision']}, {torch.get_num_threads()} thread(s)")

    def step(losses: Callable[[tuple], None]) -> Callable[[list[tuple]], None]:
        def run(steps: list[tuple]) -> None:
            for batch in steps:
                optimizer.zero_grad(set_to_none=True)
                losses(batch)
                nn.utils.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
        return run

    def project(batch: tuple) -> None:  # as fit does it
        backward = functools.partial(scaled_backward, no_scaling, 1.0, runtime.device.type)
        with runtime.autocast():
            loss = task.loss(model, batch, backward)
        backward(loss)

    def reference(batch: tuple) -> None:  # the mean, back-propagated once
        tokens, lengths, labels = batch
        with runtime.autocast():
            loss = adversarial_loss(model, tokens, lengths, labels, args.epsilon)
        loss.backward()

    def plain(batch: tuple) -> None:
        tokens, lengths, labels = batch
        with runtime.autocast():
            loss = F.cross_entropy(model(tokens, lengths).float(), labels)
        loss.backward()

    max_grad_diff = _gradient_difference(model, batches[0], project, reference)
    variants = {"project": step(project), "reference": step(reference), "plain": step(plain)}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for run in variants.values():  # warm-up (allocator, oneDNN kernels)
        run(batches[:1])
    for round_ in range(1, args.rounds + 1):
        for name, run in variants.items():
            elapsed, _ = timed(lambda run=run: run(batches))
            seconds[name].append(elapsed / len(batches))
        log(f"round {round_}/{args.rounds}: " + ", ".join(
            f"{name} {values[-1]:.3f} s/step" for name, values in seconds.items()))

    def figures(name: str) -> dict:
        per_step = median(seconds[name])
        return {"seconds_per_step": rounded(per_step),
                "tokens_per_s": round(tokens_per_step / per_step),
                "samples_s_per_step": [rounded(s) for s in seconds[name]]}

    emit("adversarial_step", {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {"source": source, "steps": len(batches), "rounds": args.rounds,
                   "batch_size": batch_size, "max_len": max_len,
                   "tokens_per_step": round(tokens_per_step), "epsilon": args.epsilon,
                   "cell": params.model.cell, "hidden": params.model.hidden,
                   "layers": params.model.layers, "vocab": vocab,
                   "precision": runtime.describe()["precision"], "quick": args.quick},
        "project": {**figures("project"),
                    "what": "fit's step: clean half back-propagated with the probe"},
        "reference": {**figures("reference"),
                      "what": "autograd.grad for the probe, then one backward of the mean"},
        "plain": {**figures("plain"), "what": "no adversarial training"},
        "speedup": rounded(median(seconds["reference"]) / median(seconds["project"])),
        "speedup_is": "reference / project seconds per step (medians)",
        "adversarial_cost": rounded(median(seconds["project"]) / median(seconds["plain"])),
        "adversarial_cost_is": "project / plain seconds per step (medians)",
        "max_grad_diff": rounded(max_grad_diff),
    })


def train_corpus(data: Path, params: Params, synthetic: bool) -> tuple[Corpus, str, int]:
    """(labeled train reviews, where they come from, vocabulary size): a vocab stage's train
    split in ``data`` when it has one and ``synthetic`` is off, else 5,000 synthetic
    reviews with IMDB-like lengths and alternating labels."""
    if (data / "train_ids.npy").is_file() and not synthetic:
        vocab = int(read_json(data / "info.json", ("vocab_size",))["vocab_size"])
        return Corpus.load(data, "train"), f"{data}/train_*.npy", vocab
    corpus = synthetic_corpus(5_000, params.vocab.max_size)
    labeled = Corpus(corpus.ids, corpus.offsets, np.arange(5_000) % 2)
    return labeled, "synthetic", params.vocab.max_size


def _gradient_difference(model: nn.Module, batch: tuple, a: Callable[[tuple], None],
                         b: Callable[[tuple], None]) -> float:
    """Largest |gradient of A - gradient of B| relative to B's largest, on one batch (the
    dropout masks drawn alike); the weights are not changed."""
    grads = []
    for losses in (a, b):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        losses(batch)
        grads.append([p.grad.detach().clone() for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    biggest = max(float(g.abs().max()) for g in grads[1])
    return max(float((x - y).abs().max()) for x, y in zip(*grads, strict=True)) / biggest


if __name__ == "__main__":
    sys.exit(main())
