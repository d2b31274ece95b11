"""The two training tasks for :func:`pipeline.training.fit`, and classifier inference."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import nullcontext
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline import distributed
from pipeline.batching import BPTTBatches, Corpus, bucket_batches, classifier_batches, collate
from pipeline.models import Hidden, LanguageModel, RNNClassifier, detach, to_device
from pipeline.runtime import TRIM_ABOVE_BYTES, Runtime, release_free_memory

if TYPE_CHECKING:  # only for annotations: evaluate and others import this, not training
    from pipeline.training import Backward


class LanguageModelTask:
    """Truncated BPTT over an endless stream; an "epoch" is ``steps_per_epoch`` windows.

    The hidden state is carried from one window to the next (detached, so gradients
    stop at the window boundary) and reset when the stream wraps around.
    """

    def __init__(self, train: BPTTBatches, valid_stream: np.ndarray, bptt: int,
                 steps_per_epoch: int | None, device: torch.device) -> None:
        self.train = train
        self.valid_stream = valid_stream
        self.bptt = bptt
        self.device = device
        self.steps_per_epoch = steps_per_epoch or train.steps_per_pass
        self.hidden: Hidden | None = None
        self.tokens_seen = 0

    def batches(self, epoch: int, start: int = 0
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool]]:
        # the stream position is part of the task state, so resuming needs no skipping
        for _ in range(self.steps_per_epoch - start):
            yield next(self.train)

    def state_dict(self) -> dict:
        hidden = None if self.hidden is None else detach(self.hidden)
        return {"position": self.train.position, "hidden": hidden,
                "tokens_seen": self.tokens_seen}

    def load_state_dict(self, state: dict) -> None:
        self.train.position = state["position"]
        hidden = state["hidden"]  # checkpoints are loaded onto the CPU
        self.hidden = None if hidden is None else to_device(hidden, self.device)
        self.tokens_seen = state["tokens_seen"]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, bool],
             backward: Backward | None = None) -> torch.Tensor:
        inputs, targets, restarted = batch
        if restarted:
            self.hidden = None
        hidden = None if self.hidden is None else detach(self.hidden)
        loss, self.hidden = model(inputs.to(self.device), targets.to(self.device), hidden)
        self.tokens_seen += targets.numel()
        return loss

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        loss = stream_loss(model, self.valid_stream, self.bptt, self.device)
        return {"valid_loss": loss, "valid_perplexity": math.exp(min(loss, 50.0))}


def stream_loss(model: LanguageModel, stream: np.ndarray, bptt: int, device: torch.device,
                rows: int = 16) -> float:
    """Mean next-word cross-entropy (nats) over a whole held-out stream, one pass."""
    rows = max(1, min(rows, (len(stream) - 1) // (bptt + 1)))
    batches = BPTTBatches(stream, rows, min(bptt, len(stream) // rows - 1))
    total, count, hidden = 0.0, 0, None
    for _ in range(batches.steps_per_pass):
        inputs, targets, _ = next(batches)
        loss, hidden = model(inputs.to(device), targets.to(device), hidden)
        total += loss.item() * targets.numel()
        count += targets.numel()
    return total / max(count, 1)


class ClassifierTask:
    """Length-bucketed, shuffled batches of labeled reviews; selection on valid accuracy.

    ``adversarial_epsilon`` > 0 (RNN classifiers): adversarial training, below, on an evenly
    spread ``adversarial_fraction`` of the steps (1: all of them). ``unlabeled`` text and
    ``virtual_epsilon`` > 0: every step also takes ``virtual_batch_size`` of its documents
    (length-bucketed, a new order each epoch) for virtual adversarial training, below."""

    def __init__(self, train: Corpus, valid: Corpus, batch_size: int, max_len: int | None,
                 seed: int, device: torch.device, adversarial_epsilon: float = 0.0,
                 adversarial_fraction: float = 1.0, unlabeled: Corpus | None = None,
                 virtual_epsilon: float = 0.0, virtual_batch_size: int = 96) -> None:
        self.train, self.valid = train, valid
        self.batch_size, self.max_len, self.seed, self.device = batch_size, max_len, seed, device
        self.adversarial_epsilon = adversarial_epsilon
        self.adversarial_fraction = adversarial_fraction
        self.steps_per_epoch = math.ceil(len(train) / batch_size)
        self.adversarial_step = adversarial_epsilon > 0  # whether the current batch's is
        self.unlabeled = unlabeled if virtual_epsilon > 0 and unlabeled else None
        self.virtual_epsilon, self.virtual_batch_size = virtual_epsilon, virtual_batch_size
        self.unlabeled_batches: list[np.ndarray] = []
        self.epoch = self.step = self.rows = 0  # the current batch's, and its rows (all ranks')

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        rng = np.random.default_rng([self.seed, epoch])  # the same order on every rerun
        batches = classifier_batches(self.train, self.batch_size, self.max_len, rng, start)
        if self.unlabeled is not None:  # their own stream, also from (seed, epoch) alone
            lengths = self.unlabeled.lengths
            if self.max_len is not None:
                lengths = np.minimum(lengths, self.max_len)
            self.unlabeled_batches = bucket_batches(
                lengths, self.virtual_batch_size, np.random.default_rng([self.seed, epoch, 1]))
        for step, (_, batch) in enumerate(batches, start):
            # fit takes each batch's loss before asking for the next one; from the step
            # index alone, so a resumed epoch makes the same choices
            self.adversarial_step = self.adversarial_epsilon > 0 and \
                adversarial_on(step, self.adversarial_fraction)
            self.epoch, self.step, self.rows = epoch, step, len(batch[0])
            yield batch

    def state_dict(self) -> dict:
        return {}  # batches depend only on (seed, epoch)

    def load_state_dict(self, state: dict) -> None:
        pass

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...],
             backward: Backward | None = None) -> torch.Tensor:
        tokens, lengths, labels = (t.to(self.device) for t in batch)
        # first, so that under torchrun its local backward, like adversarial training's
        # clean one, comes before the backward through the DDP wrapper that reduces them all
        virtual = None if self.unlabeled is None else self.virtual_loss(model, len(labels),
                                                                         backward)
        if self.adversarial_step:
            loss = adversarial_loss(model, tokens, lengths, labels, self.adversarial_epsilon,
                                    backward)
        else:
            loss = F.cross_entropy(model(tokens, lengths).float(), labels)
        return loss if virtual is None else loss + virtual

    def virtual_loss(self, model: nn.Module, shard_rows: int, backward: Backward | None
                     ) -> torch.Tensor | None:
        """The current step's virtual adversarial loss on its batch of unlabeled text, weighted
        so that :func:`~pipeline.training.fit`, which weights the step by this rank's share of
        the labeled batch, gives it the unlabeled batch's mean gradient over all ranks.
        Back-propagated at once with ``backward``, as adversarial training's clean half."""
        module: RNNClassifier = getattr(model, "module", model)
        indices = self.unlabeled_batches[self.step % len(self.unlabeled_batches)]
        tokens, lengths, _ = collate(self.unlabeled, indices, self.max_len)
        # the random start of the search, per review: the same whatever the ranks, and on a
        # resumed run
        generator = torch.Generator().manual_seed(
            int(np.random.default_rng([self.seed, self.epoch, self.step, 2]).integers(2 ** 62)))
        noise = torch.randn(len(indices), module.gradient_steps(tokens.size(1)),
                            module.encoder.config.embedding_dim, generator=generator)
        part = distributed.shard((tokens, lengths, noise), len(indices))
        if part is None:  # fewer reviews than processes
            return None
        tokens, lengths, noise = (t.to(self.device) for t in part)
        loss = virtual_adversarial_loss(module, tokens, lengths, self.virtual_epsilon, noise)
        loss = loss * (len(tokens) / len(indices)) / (shard_rows / self.rows)
        if backward is None:
            return loss
        backward(loss)
        return loss.detach()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        # inference batches need no gradients: large ones whatever the training batch size
        probs = predict_proba(model, self.valid, max(256, self.batch_size), self.max_len,
                              self.device)
        labels = torch.from_numpy(self.valid.labels)
        loss = F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-12)), labels).item()
        accuracy = float((probs.argmax(1) == self.valid.labels).mean())
        return {"valid_loss": loss, "valid_accuracy": accuracy}


def virtual_adversarial_loss(model: RNNClassifier, tokens: torch.Tensor, lengths: torch.Tensor,
                             epsilon: float, noise: torch.Tensor, xi: float = 0.1
                             ) -> torch.Tensor:
    """Virtual adversarial training (Miyato, Dai & Goodfellow 2017), for text without labels:
    KL(p || p'), p the model's class probabilities for the reviews (a constant) and p' those
    with the word vectors moved by the perturbation ``epsilon`` RMS embedding entries long
    (scaled as in :func:`adversarial_delta`) that increases it most. That direction is
    found by one power iteration from ``noise`` [B, :meth:`~RNNClassifier.gradient_steps`,
    embedding_dim]: the gradient of the KL at a perturbation ``xi`` long in the noise's
    direction (their 0.1 on normalized embeddings). Padding gets none."""
    with torch.no_grad():
        target = F.log_softmax(model(tokens, lengths).float(), dim=-1)
    scale = embedding_rms(model)
    first = tokens.size(1) - noise.size(1)  # the steps before get no gradients (BPT3C)
    real = torch.arange(noise.size(1), device=tokens.device) + first < lengths[:, None]
    probe = per_review_length(noise * real[:, :, None], xi * scale)
    probe.requires_grad_(True)
    (grad,) = torch.autograd.grad(divergence(model(tokens, lengths, probe), target), probe)
    grad = torch.nan_to_num(grad.float(), nan=0.0, posinf=0.0, neginf=0.0)
    return divergence(model(tokens, lengths, per_review_length(grad, epsilon * scale)), target)


def divergence(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(target || softmax(logits)), ``target`` as log-probabilities."""
    return F.kl_div(F.log_softmax(logits.float(), dim=-1), target, log_target=True,
                    reduction="batchmean")


def per_review_length(vectors: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """[B, T, E] scaled to an L2 norm of ``length`` per review (over all its steps)."""
    return length * vectors / vectors.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]


def embedding_rms(model: RNNClassifier) -> torch.Tensor:
    """The root mean square of the embedding matrix's entries: the unit of the (virtual)
    adversarial perturbations' length, so that epsilon does not depend on their scale."""
    return model.encoder.embedding.weight.detach().float().pow(2).mean().sqrt()


def adversarial_on(step: int, fraction: float) -> bool:
    """Whether step ``step`` (from 0) of an epoch is adversarial: ``fraction`` of the steps,
    evenly spread (0.5: every second one, the first plain)."""
    return math.floor((step + 1) * fraction + 1e-9) > math.floor(step * fraction + 1e-9)


def adversarial_loss(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor,
                     labels: torch.Tensor, epsilon: float, backward: Backward | None = None
                     ) -> torch.Tensor:
    """Adversarial training on word embeddings (Miyato, Dai & Goodfellow 2017): the mean of
    the batch's loss and its loss with the word vectors moved by :func:`adversarial_delta`.
    Costs a second forward and backward pass per step. With ``backward`` (from
    :func:`~pipeline.training.fit`) the clean half is back-propagated at once, in the same
    pass that finds the perturbation, and only the perturbed half's graph is returned:
    the same gradients as back-propagating the mean, 1.24x faster per step (one fewer
    backward through the clean graph; benchmarks/README.md)."""
    # under torchrun the clean pass bypasses the DDP wrapper: its gradients accumulate
    # locally, and DDP reduces each (clean + perturbed) once, in the perturbed backward
    module: RNNClassifier = getattr(model, "module", model)
    clean, delta = adversarial_delta(module, tokens, lengths, labels, epsilon, backward)
    perturbed = F.cross_entropy(model(tokens, lengths, delta).float(), labels)
    return ((clean if backward is None else clean.detach()) + perturbed) / 2


def adversarial_delta(model: RNNClassifier, tokens: torch.Tensor, lengths: torch.Tensor,
                      labels: torch.Tensor, epsilon: float, backward: Backward | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's loss, and the perturbation of its word vectors that increases each
    review's loss most, to first order: the loss's gradient with respect to them, scaled to
    an L2 norm (over the whole review) of ``epsilon`` x the embedding matrix's RMS entry, so
    that ``epsilon`` does not depend on the embeddings' scale (Miyato et al. normalized
    theirs to RMS ~1 and used 5 on IMDB). Padding gets none. In the encoder's reading
    order, for the steps that get gradients (:meth:`gradient_steps`).

    Without ``backward`` the loss keeps its graph (the caller back-propagates it later);
    with it, half the loss is back-propagated here, into the model's gradients and the
    perturbation's alike, and the graph is freed."""
    probe = torch.zeros(tokens.size(0), model.gradient_steps(tokens.size(1)),
                        model.encoder.config.embedding_dim, device=tokens.device,
                        requires_grad=True)
    clean = F.cross_entropy(model(tokens, lengths, probe).float(), labels)
    if backward is None:
        (grad,) = torch.autograd.grad(clean, probe, retain_graph=True)
    else:
        backward(clean / 2)
        # it carries fp16's loss scale, if any (only its direction is used); an overflow
        # there is a step the scaler skips anyway: no perturbation rather than nan
        grad = torch.nan_to_num(probe.grad, nan=0.0, posinf=0.0, neginf=0.0)
    return clean, per_review_length(grad, epsilon * embedding_rms(model))


@torch.no_grad()
def predict_proba(model: nn.Module, corpus: Corpus, batch_size: int, max_len: int | None,
                  device: torch.device, runtime: Runtime | None = None) -> np.ndarray:
    """Class probabilities [N, C] for every document, in corpus order; documents are
    truncated to ``max_len`` tokens (``None``: read whole)."""
    was_training = model.training
    model.eval()
    out: np.ndarray | None = None
    for indices, (tokens, lengths, _) in classifier_batches(corpus, batch_size, max_len, None):
        with runtime.autocast() if runtime is not None else nullcontext():
            logits = model(tokens.to(device), lengths.to(device))
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        if out is None:
            out = np.zeros((len(corpus), probs.shape[1]), dtype=np.float32)
        out[indices] = probs
        release_free_memory(TRIM_ABOVE_BYTES)  # batches of every length: see the function
    model.train(was_training)
    assert out is not None, "empty corpus"
    return out
