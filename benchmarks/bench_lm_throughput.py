"""LM training throughput: the project's pretraining step vs a word_language_model-style step.

Project ("A"): ``pipeline.models.LanguageModel`` with params.yaml's model and pretrain
settings (adaptive softmax, AdamW, one-cycle LR, clipping), the runtime of
``pipeline.runtime.setup`` (threads, flush-denormal, bf16 autocast where the CPU has it)
and ``LanguageModelTask`` over ``BPTTBatches``; the step mirrors the body of
``pipeline.training.fit`` (without tqdm and checkpoints).

Reference ("B"): a re-implementation of the training step of PyTorch's
``word_language_model`` example at the same size: embedding -> dropout -> nn.LSTM
(sequence-first) -> dropout -> Linear decoder over the full vocabulary, log-softmax +
NLL (= full softmax cross-entropy), fp32, clip_grad_norm_ then plain SGD with
``p.data.add_(p.grad, alpha=-lr)``; the hidden state is carried and detached per batch.
By default it runs on the project's batch shape (64 x 70), which is kinder to it than the
example's own defaults (20 x 35: smaller matmuls); ``--reference-shape example`` uses those.

Both read synthetic token ids (no data needed), run in the same process, interleaved
A B A B ...; the figure is the median tokens/s of each and their ratio (target >= 10).

FLOPs per token (a multiply-add is 2 FLOPs; backward ~ 2x forward, so training = 3x forward):
  LSTM, L layers:     3 * sum_l 4 * (in_l + H) * H * 2,   in_0 = E, in_l = H (l > 0)
  full softmax:       3 * H * V * 2   (+ 3 * H * E * 2 for the project's projection if H != E)
  adaptive softmax:   3 * [H * (c_0 + n_tails) * 2 + sum_i f_i * (H * h_i + h_i * s_i) * 2]
                      c_0 = first cutoff, h_i = H // 4**(i+1), s_i = words in tail i,
                      f_i = fraction of targets in tail i (tails only run for their targets)
Embeddings, dropout, gate nonlinearities, log-softmax and the optimizer are not counted
(they are memory-bound). Model FLOP/s utilization = FLOPs/token * tokens/s / matmul peak,
the peak being the median GFLOP/s of square matmuls in the precision the model computes in
(bf16 for the project under bf16 autocast, fp32 for the reference).

Uniform random targets put ~93% of the targets in the adaptive softmax's tails, far more
than real text (Zipfian: most tokens are frequent words): ``--distribution zipf`` is closer
to the real pretraining cost of the project; uniform is the default (pessimistic for it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import REPO, emit, log, median, rounded, timed
from torch import nn

from pipeline.batching import BPTTBatches
from pipeline.config import Params, RuntimeParams, load_params
from pipeline.models import EncoderConfig, LanguageModel
from pipeline.runtime import Runtime, cpu_has_bf16, setup
from pipeline.tasks import LanguageModelTask
from pipeline.training import adamw, one_cycle

REFERENCE_LR = 20.0  # the example's default learning rate
REFERENCE_CLIP = 0.25  # the example's default clip
EXAMPLE_SHAPE = (20, 35)  # the example's default --batch_size and --bptt
TARGET_RATIO = 10.0
CPU = torch.device("cpu")


# ---------------------------------------------------------------- FLOPs


def lstm_flops(emb: int, hidden: int, layers: int) -> float:
    """Forward FLOPs per token of a stacked LSTM (4 gates, input and recurrent matmuls)."""
    total = 0.0
    for layer in range(layers):
        inputs = emb if layer == 0 else hidden
        total += 4 * (inputs + hidden) * hidden * 2
    return total


def adaptive_flops(hidden: int, vocab: int, cutoffs: tuple[int, ...], fractions: list[float],
                   div_value: float = 4.0) -> float:
    """Forward FLOPs per token of AdaptiveLogSoftmaxWithLoss's loss path."""
    bounds = [*cutoffs, vocab]
    total = hidden * (bounds[0] + len(cutoffs)) * 2.0
    for i, fraction in enumerate(fractions):
        projected = int(hidden // (div_value ** (i + 1)))
        size = bounds[i + 1] - bounds[i]
        total += fraction * (hidden * projected + projected * size) * 2.0
    return total


def tail_fractions(targets: np.ndarray, vocab: int, cutoffs: tuple[int, ...]) -> list[float]:
    bounds = [*cutoffs, vocab]
    pairs = zip(bounds[:-1], bounds[1:], strict=True)
    return [float(np.mean((targets >= lo) & (targets < hi))) for lo, hi in pairs]


# ---------------------------------------------------------------- peak


def matmul_gflops(dtype: torch.dtype, size: int, repeats: int,
                  device: torch.device = CPU) -> float:
    """Median GFLOP/s of ``size`` x ``size`` matmuls in ``dtype`` (threads as set)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    out = torch.empty(size, size, dtype=dtype, device=device)

    def product() -> None:
        torch.mm(a, b, out=out)
        synchronize(device)

    for _ in range(2):
        product()
    seconds = [timed(product)[0] for _ in range(repeats)]
    return 2.0 * size**3 / median(seconds) / 1e9


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (timings on CUDA would stop at the launch otherwise)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- synthetic data


def synthetic_stream(tokens: int, vocab: int, distribution: str, seed: int) -> np.ndarray:
    """Random token ids over the ordinary words (ids 3.., after <pad> <unk> <eos>)."""
    rng = np.random.default_rng(seed)
    words = vocab - 3
    if distribution == "uniform":
        return rng.integers(0, words, size=tokens, dtype=np.int64) + 3
    ranks = np.arange(1, words + 1, dtype=np.float64)  # Zipf's law: p(rank) ~ 1 / rank
    probs = 1.0 / ranks
    return rng.choice(words, size=tokens, p=probs / probs.sum()).astype(np.int64) + 3


# ---------------------------------------------------------------- project step


def project_step(params: Params, runtime: Runtime, vocab: int, stream: np.ndarray,
                 total_steps: int) -> tuple[Callable[[], float], LanguageModel]:
    """One optimizer step of the project's pretraining, as ``pipeline.training.fit`` does it."""
    config = params.pretrain
    encoder = EncoderConfig(vocab_size=vocab, **params.model.model_dump())
    model = LanguageModel(encoder, config.softmax, tuple(config.adaptive_cutoffs))
    model.to(runtime.device).train()
    optimizer = adamw(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = one_cycle(optimizer, total_steps)
    scaler = torch.amp.GradScaler(enabled=runtime.amp_dtype == torch.float16)
    batches = BPTTBatches(stream, config.batch_size, config.bptt)
    task = LanguageModelTask(batches, stream[:1000], config.bptt, None, runtime.device)

    def step() -> float:
        batch = next(batches)
        with runtime.autocast():
            loss = task.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        return loss.item()

    return step, model


# ---------------------------------------------------------------- reference step


class ReferenceLM(nn.Module):
    """Embedding -> dropout -> LSTM (sequence-first) -> dropout -> full-vocabulary decoder."""

    def __init__(self, vocab: int, emb: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.vocab = vocab
        self.drop = nn.Dropout(dropout)
        self.embedding = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, layers, dropout=dropout if layers > 1 else 0.0)
        self.decoder = nn.Linear(hidden, vocab)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, tokens: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """tokens [T, B] -> log-probabilities [T * B, V] and the new (h, c)."""
        out, hidden = self.lstm(self.drop(self.embedding(tokens)), hidden)
        logits = self.decoder(self.drop(out))
        return F.log_softmax(logits.view(-1, self.vocab), dim=1), hidden


def reference_step(params: Params, vocab: int, stream: np.ndarray, batch: int, bptt: int,
                   device: torch.device = CPU) -> tuple[Callable[[], float], ReferenceLM]:
    """One step of the word_language_model-style loop: fp32, full softmax, manual SGD."""
    model_params = params.model
    model = ReferenceLM(vocab, model_params.embedding_dim, model_params.hidden,
                        model_params.layers, model_params.dropout).to(device).train()
    columns = len(stream) // batch
    data = torch.from_numpy(stream[: columns * batch]).view(batch, columns).t().contiguous()
    data = data.to(device)  # the example batchifies the whole corpus onto the device
    state = {"position": 0}
    zeros = torch.zeros(model_params.layers, batch, model_params.hidden, device=device)
    hidden = [(zeros.clone(), zeros.clone())]

    def step() -> float:
        start = state["position"]
        if start + bptt + 1 > data.size(0):
            start = 0
        state["position"] = start + bptt
        inputs, targets = data[start:start + bptt], data[start + 1:start + 1 + bptt]
        model.zero_grad()
        carried = tuple(h.detach() for h in hidden[0])
        log_probs, new_hidden = model(inputs, carried)
        hidden[0] = new_hidden
        loss = F.nll_loss(log_probs, targets.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), REFERENCE_CLIP)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-REFERENCE_LR)
        return loss.item()

    return step, model


# ---------------------------------------------------------------- main


def run_steps(step: Callable[[], float], count: int) -> float:
    """Seconds for ``count`` consecutive steps (each step ends with ``loss.item()``, which
    waits for a GPU's queued work)."""
    return timed(lambda: [step() for _ in range(count)])[0]


def log_profile(step: Callable[[], float], count: int, device: torch.device) -> None:
    """torch.profiler over ``count`` steps: the operators that cost most, on stderr."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(count):
            step()
    sorts = ["self_cpu_time_total"] + (["self_cuda_time_total"] if device.type == "cuda" else [])
    for sort in sorts:
        log(f"profile of {count} project steps, by {sort}:")
        print(prof.key_averages().table(sort_by=sort, row_limit=20), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where both models train (cuda: the GPU's own bf16/fp32 peaks)")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="also profile this many project steps (torch.profiler) and print "
                             "the most expensive operators to stderr")
    parser.add_argument("--batch", type=int, default=None,
                        help="rows per step for both A and B (default: params pretrain.batch_size)")
    parser.add_argument("--reference-shape", choices=("same", "example"), default="same",
                        help="the reference's batch x bptt: the project's (same) or the "
                             "example's own defaults, 20 x 35 (example)")
    parser.add_argument("--vocab", type=int, default=None,
                        help="vocabulary size (default: params vocab.max_size, 30,000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved A/B rounds")
    parser.add_argument("--steps", type=int, default=6, help="project steps per round")
    parser.add_argument("--ref-steps", type=int, default=2, help="reference steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each first")
    parser.add_argument("--peak-size", type=int, default=2048, help="matmul size for the peak")
    parser.add_argument("--peak-repeats", type=int, default=10)
    parser.add_argument("--distribution", choices=("uniform", "zipf"), default="uniform",
                        help="synthetic token ids: uniform over the vocabulary or Zipfian")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 rounds of 2 + 1 steps, 1 warm-up step")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.ref_steps, args.warmup, args.peak_repeats = 2, 2, 1, 1, 3

    params = load_params(args.params)
    if args.batch:  # same model, more rows per step (both sides)
        params = params.model_copy(update={
            "pretrain": params.pretrain.model_copy(update={"batch_size": args.batch})})
    runtime = setup(RuntimeParams(device=args.device, threads=args.threads,
                                  precision=params.runtime.precision, seed=params.runtime.seed))
    vocab = args.vocab or params.vocab.max_size
    batch, bptt = params.pretrain.batch_size, params.pretrain.bptt
    tokens_per_step = batch * bptt
    ref_batch, ref_bptt = (batch, bptt) if args.reference_shape == "same" else EXAMPLE_SHAPE
    ref_tokens_per_step = ref_batch * ref_bptt
    stream = synthetic_stream(batch * (bptt * 100 + 1), vocab, args.distribution, seed=0)
    log(f"threads {torch.get_num_threads()}, precision {runtime.describe()['precision']}, "
        f"vocab {vocab:,}, batch {batch} x bptt {bptt}, {args.distribution} token ids")

    log(f"matmul peak: {args.peak_size}x{args.peak_size}, {args.peak_repeats} repeats")
    peak: dict[str, float | None] = {
        "fp32": matmul_gflops(torch.float32, args.peak_size, args.peak_repeats, runtime.device)}
    # a CPU without AVX-512 BF16 / AMX emulates bf16 matmuls (~300x slower than fp32 on an
    # AVX2-only EPYC: a minute for one 2048^3 product); the project runs in fp32 there
    peak["bf16"] = (matmul_gflops(torch.bfloat16, args.peak_size, args.peak_repeats,
                                  runtime.device)
                    if runtime.device.type == "cuda" or cpu_has_bf16() else None)

    total_steps = args.warmup + args.rounds * args.steps + args.profile + 10
    step_a, model_a = project_step(params, runtime, vocab, stream, total_steps)
    step_b, _ = reference_step(params, vocab, stream, ref_batch, ref_bptt, runtime.device)
    log(f"warm-up: {args.warmup} step(s) each")
    for _ in range(args.warmup):
        step_a()
        step_b()
    rates_a: list[float] = []
    rates_b: list[float] = []
    for round_ in range(1, args.rounds + 1):
        seconds_a = run_steps(step_a, args.steps)
        seconds_b = run_steps(step_b, args.ref_steps)
        rates_a.append(args.steps * tokens_per_step / seconds_a)
        rates_b.append(args.ref_steps * ref_tokens_per_step / seconds_b)
        log(f"round {round_}/{args.rounds}: project {rates_a[-1]:,.0f} tokens/s, "
            f"reference {rates_b[-1]:,.0f} tokens/s")

    if args.profile:
        log_profile(step_a, args.profile, runtime.device)

    model = params.model
    lstm = lstm_flops(model.embedding_dim, model.hidden, model.layers)
    if model_a.softmax == "adaptive":
        cutoffs = tuple(model_a.cutoffs)
        fractions = tail_fractions(stream[1:], vocab, cutoffs)
        head_a = adaptive_flops(model.hidden, vocab, cutoffs, fractions)
    else:
        fractions = []
        head_a = model.hidden * vocab * 2.0 + (
            model.hidden * model.embedding_dim * 2.0 if model.hidden != model.embedding_dim
            else 0.0)
    flops_a = 3 * (lstm + head_a)
    flops_b = 3 * (lstm + model.hidden * vocab * 2.0)
    precision_a = "bf16" if runtime.amp_dtype == torch.bfloat16 else "fp32"
    tps_a, tps_b = median(rates_a), median(rates_b)

    def figures(tps: float, samples: list[float], flops: float, precision: str,
                step_tokens: int) -> dict:
        achieved = flops * tps / 1e9
        return {"tokens_per_s": round(tps), "step_s": rounded(step_tokens / tps),
                "samples_tokens_per_s": [round(r) for r in samples], "precision": precision,
                "flops_per_token": rounded(flops, 4), "achieved_gflops": rounded(achieved),
                "mfu": None if peak[precision] is None else rounded(achieved / peak[precision]),
                "mfu_vs": f"{precision} matmul peak"}

    ratio = tps_a / tps_b
    emit("lm_throughput", {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {"vocab": vocab, "batch": batch, "bptt": bptt, "cell": model.cell,
                   "embedding_dim": model.embedding_dim, "hidden": model.hidden,
                   "layers": model.layers, "softmax": model_a.softmax,
                   "adaptive_tail_fractions": [rounded(f) for f in fractions],
                   "distribution": args.distribution, "rounds": args.rounds,
                   "steps": args.steps, "ref_steps": args.ref_steps, "warmup": args.warmup,
                   "threads": torch.get_num_threads(), "quick": args.quick,
                   "device": str(runtime.device)},
        "peak_gflops": {k: None if v is None else round(v, 1) for k, v in peak.items()},
        "project": figures(tps_a, rates_a, flops_a, precision_a, tokens_per_step),
        "reference": {**figures(tps_b, rates_b, flops_b, "fp32", ref_tokens_per_step),
                      "batch": ref_batch, "bptt": ref_bptt,
                      "what": "word_language_model-style step: full softmax, fp32, SGD"},
        "ratio": rounded(ratio),
        "ratio_is": "project tokens/s / reference tokens/s (medians)",
        "target_ratio": TARGET_RATIO,
        "meets_target": bool(ratio >= TARGET_RATIO),
    })


if __name__ == "__main__":
    main()
