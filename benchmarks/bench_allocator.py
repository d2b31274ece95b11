"""Training steps with glibc's default malloc vs :func:`pipeline.runtime.keep_freed_memory`.

Project ("A"): the stages' runtime (``pipeline.runtime.setup``), which has glibc serve even
the big blocks from the heap and keep freed memory for the next step
(``keep_freed_memory``), trimmed after a step only once the process holds more than
``TRIM_ABOVE_BYTES`` resident, as ``fit`` does. Reference ("B"): the code before
(2026-12-07): glibc's defaults, which mmap every block above its threshold (at most 32 MB)
and unmap it when freed, so that the kernel zero-fills fresh pages for every step's
activations and gradients, and a trim every 50 steps.

Two workloads, each as ``pipeline.training.fit`` steps them: the RNN classifier's
adversarial-training step (params.yaml's encoder, batches of ``classifier.batch_size``
train reviews of at most ``classifier.max_len`` tokens from ``--data``, else synthetic
reviews) and the language model's step (``pretrain.batch_size`` x ``pretrain.bptt``,
adaptive softmax, synthetic token ids). Both under bf16 autocast where the CPU has it.
The allocator setting is process-wide, so each arm runs in its own child process; rounds
alternate B and A (noisy machines). Figures: median seconds per step of each arm, B / A,
and per arm the child's kernel (system) CPU seconds, minor page faults and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_adversarial_step import train_corpus  # noqa: E402
from benchmarks.bench_lm_throughput import project_step, synthetic_stream  # noqa: E402
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
from pipeline import runtime as runtime_module  # noqa: E402
from pipeline.batching import classifier_batches  # noqa: E402
from pipeline.config import Params, RuntimeParams, load_params  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.models import EncoderConfig, RNNClassifier  # noqa: E402
from pipeline.runtime import (  # noqa: E402
    TRIM_ABOVE_BYTES,
    Runtime,
    release_free_memory,
    setup,
)
from pipeline.tasks import ClassifierTask  # noqa: E402
from pipeline.training import adamw, scaled_backward  # noqa: E402

ARMS = {"glibc": "B: glibc's defaults (mmap above its threshold, unmapped on free), "
                 "trimmed every 50 steps",
        "keep": "A: keep_freed_memory (big blocks from the heap, kept for reuse), trimmed "
                "above TRIM_ABOVE_BYTES resident"}
OLD_TRIM_EVERY = 50  # the reference's trim interval (fit's before 2026-12-07)
WORKLOADS = ("classifier", "lm")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="a vocab stage output with train_*.npy (default: data/vocab when "
                             "a pipeline run made it, else synthetic reviews)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--steps", type=whole_number(1), default=30,
                        help="timed steps per child")
    parser.add_argument("--warmup", type=whole_number(0), default=3,
                        help="untimed steps first (oneDNN primitives; glibc's dynamic mmap "
                             "threshold settles)")
    parser.add_argument("--rounds", type=whole_number(1), default=3,
                        help="B A rounds (a child process each)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: one per core)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 steps of 8 short reviews / a small LM batch, 1 round")
    parser.add_argument("--child", choices=tuple(ARMS), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; problems with its inputs are one line (exit 1), as in the stages."""
    args = parse_args(argv)
    return run_benchmark(child if args.child else benchmark, args)


def benchmark(args: argparse.Namespace) -> None:
    if args.data is not None and not (args.data / "train_ids.npy").is_file():
        raise PipelineError(f"{args.data} has no train_ids.npy: give a vocab stage's output "
                            "folder (data/vocab)")
    rounds = 1 if args.quick else args.rounds
    if args.quick:
        args.steps, args.warmup = 4, 1
    samples: dict[str, dict[str, list[dict]]] = {w: {a: [] for a in ARMS} for w in args.workloads}
    for round_ in range(1, rounds + 1):
        for workload in args.workloads:
            for arm in ARMS:  # B first, then A
                result = run_child(args, arm, workload)
                samples[workload][arm].append(result)
                log(f"round {round_}/{rounds} {workload} {arm}: "
                    f"{result['seconds_per_step']:.3f} s/step, system CPU "
                    f"{result['system_seconds']:.1f} s, {result['minor_faults']:,} page faults, "
                    f"peak {result['peak_rss_mb']:,} MB, {result['trims']} trim(s)")
    figures: dict[str, dict] = {}
    for workload, arms in samples.items():
        per_arm = {arm: summary(values) for arm, values in arms.items()}
        figures[workload] = {
            "project": {**per_arm["keep"], "what": ARMS["keep"]},
            "reference": {**per_arm["glibc"], "what": ARMS["glibc"]},
            "speedup": rounded(per_arm["glibc"]["seconds_per_step"]
                               / per_arm["keep"]["seconds_per_step"]),
            "config": arms["keep"][0]["config"],
        }
    emit("allocator", {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "steps": args.steps, "rounds": rounds, **figures,
        "speedup_is": "reference / project seconds per step (medians over rounds)",
    })


def run_child(args: argparse.Namespace, arm: str, workload: str) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", arm,
               "--workloads", workload, "--steps", str(args.steps),
               "--warmup", str(args.warmup),
               "--threads", str(args.threads)]
    if args.data is not None:
        command += ["--data", str(args.data)]
    if args.quick:
        command.append("--quick")
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise PipelineError(f"the {arm} {workload} child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(results: list[dict]) -> dict:
    per_step = median([r["seconds_per_step"] for r in results])
    return {"seconds_per_step": rounded(per_step),
            "samples_s_per_step": [r["seconds_per_step"] for r in results],
            "system_seconds": round(median([r["system_seconds"] for r in results]), 1),
            "minor_faults": round(median([r["minor_faults"] for r in results])),
            "peak_rss_mb": round(median([r["peak_rss_mb"] for r in results])),
            "trims": [r["trims"] for r in results]}


def child(args: argparse.Namespace) -> None:
    """One arm, one workload: prints its figures as one JSON line."""
    if args.child == "glibc":  # the stages' setup() without the allocator change
        runtime_module.keep_freed_memory = lambda: None
    params = load_params(REPO / "params.yaml")
    runtime = setup(RuntimeParams(device="cpu", threads=args.threads,
                                  precision=params.runtime.precision, seed=params.runtime.seed))
    (workload,) = args.workloads
    step, config = (classifier_step if workload == "classifier" else lm_step)(
        params, runtime, args)
    trims = 0

    def steps(first: int, count: int) -> None:
        nonlocal trims
        for index in range(first, first + count):
            step(index)
            if args.child == "keep":
                trims += release_free_memory(TRIM_ABOVE_BYTES)  # as fit
            elif (index + 1) % OLD_TRIM_EVERY == 0:
                trims += release_free_memory()

    steps(0, args.warmup)
    before, trims = resource.getrusage(resource.RUSAGE_SELF), 0

    seconds, _ = timed(lambda: steps(args.warmup, args.steps))
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "seconds_per_step": rounded(seconds / args.steps),
        "system_seconds": after.ru_stime - before.ru_stime,
        "user_seconds": after.ru_utime - before.ru_utime,
        "minor_faults": after.ru_minflt - before.ru_minflt,
        "peak_rss_mb": after.ru_maxrss // 1024,
        "trims": trims,
        "config": {**config, "precision": runtime.describe()["precision"],
                   "threads": torch.get_num_threads()},
    }))


def classifier_step(params: Params, runtime: Runtime, args: argparse.Namespace):
    batch_size, max_len = params.classifier.batch_size, params.classifier.max_len
    data = args.data or REPO / "data" / "vocab"
    corpus, source, vocab = train_corpus(data, params, synthetic=args.quick)
    if args.quick:
        batch_size, max_len = 8, 40
    epsilon = params.classifier.rnn_pretrained.adversarial_epsilon
    rng = np.random.default_rng(0)  # one epoch's shuffled buckets, the first steps of it
    batches = [b for _, b in classifier_batches(corpus, batch_size, max_len, rng)]
    batches = batches[:args.warmup + args.steps]
    torch.manual_seed(params.runtime.seed)
    model = RNNClassifier(EncoderConfig.of(params.model, vocab), 2).to(runtime.device).train()
    optimizer = adamw(model.parameters(), lr=1e-3)
    task = ClassifierTask(corpus, corpus, batch_size, max_len, 0, runtime.device,
                          adversarial_epsilon=epsilon)
    no_scaling = torch.amp.GradScaler(enabled=False)  # bf16 / fp32 on CPU, as in fit

    def step(index: int) -> None:
        optimizer.zero_grad(set_to_none=True)

        def backward(loss: torch.Tensor) -> None:
            scaled_backward(no_scaling, 1.0, runtime.device.type, loss)

        with runtime.autocast():
            loss = task.loss(model, batches[index % len(batches)], backward)
        backward(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), params.classifier.clip)
        optimizer.step()

    tokens = float(np.mean([int(b[1].sum()) for b in batches]))
    return step, {"source": source, "batch_size": batch_size, "max_len": max_len,
                  "tokens_per_step": round(tokens), "adversarial_epsilon": epsilon}


def lm_step(params: Params, runtime: Runtime, args: argparse.Namespace):
    if args.quick:
        params = params.model_copy(update={
            "pretrain": params.pretrain.model_copy(update={"batch_size": 8, "bptt": 20})})
    batch, bptt, vocab = params.pretrain.batch_size, params.pretrain.bptt, params.vocab.max_size
    steps = args.warmup + args.steps
    stream = synthetic_stream(batch * (bptt * (steps + 2) + 1), vocab, "zipf", seed=0)
    step, _ = project_step(params, runtime, vocab, stream, steps + 10)
    return (lambda index: step()), {"source": "synthetic (Zipf)", "batch_size": batch,
                                     "bptt": bptt, "softmax": params.pretrain.softmax}


if __name__ == "__main__":
    sys.exit(main())
