"""Adversarial training on word embeddings (`classifier.rnn_*.adversarial_epsilon`):
the perturbation's length and direction, and that it trains."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import RuntimeParams
from pipeline.models import EncoderConfig, RNNClassifier
from pipeline.runtime import setup
from pipeline.tasks import ClassifierTask, adversarial_delta, adversarial_loss, adversarial_on
from pipeline.training import fit
from tests.conftest import REPO, run
from tests.test_training import keyword_corpus

CONFIG = EncoderConfig(vocab_size=40, embedding_dim=8, hidden=12, layers=2, dropout=0.0,
                       embedding_dropout=0.0, input_dropout=0.0)


def padded_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(3, 40, (6, 15), generator=generator)
    lengths = torch.tensor([15, 12, 9, 7, 4, 2])
    tokens[torch.arange(15)[None, :] >= lengths[:, None]] = 0  # padding at the end
    return tokens, lengths, torch.tensor([0, 1, 0, 1, 0, 1])


@pytest.mark.parametrize("backward", [False, True])
def test_the_perturbation_has_the_set_length_skips_padding_and_raises_the_loss(
        backward: bool) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(CONFIG, 2, head_dropout=0.0, backward=backward).eval()
    tokens, lengths, labels = padded_batch()
    clean, delta = adversarial_delta(model, tokens, lengths, labels, epsilon=2.0)

    assert delta.shape == (6, 15, CONFIG.embedding_dim) and not delta.requires_grad
    rms = model.encoder.embedding.weight.pow(2).mean().sqrt()
    torch.testing.assert_close(delta.flatten(1).norm(dim=1), (2.0 * rms).expand(6))
    past_end = torch.arange(15)[None, :] >= lengths[:, None]  # in reading order, both ways
    assert delta[past_end].abs().max() == 0 and delta[~past_end].abs().max() > 0

    def loss(perturbation: torch.Tensor) -> float:
        with torch.no_grad():
            return F.cross_entropy(model(tokens, lengths, perturbation), labels).item()

    assert loss(torch.zeros_like(delta)) == pytest.approx(clean.item(), abs=1e-6)
    random = torch.randn(delta.shape, generator=torch.Generator().manual_seed(2))
    random = random.masked_fill(past_end[..., None], 0.0)
    random = random / random.flatten(1).norm(dim=1)[:, None, None] * 2.0 * rms
    # the gradient's direction raises the loss, and more than a random one of the same length
    assert loss(delta) > loss(random) and loss(delta) > clean.item()


def test_with_bpt3c_only_the_steps_with_gradients_are_perturbed() -> None:
    torch.manual_seed(0)
    model = RNNClassifier(CONFIG, 2, head_dropout=0.0, grad_len=5, bptt=4).eval()
    tokens, lengths, labels = padded_batch()
    _, delta = adversarial_delta(model, tokens, lengths, labels, epsilon=1.0)
    assert model.gradient_steps(15) == 5 and delta.shape == (6, 5, CONFIG.embedding_dim)
    assert model.gradient_steps(3) == 3


def test_the_loss_is_the_mean_of_the_clean_and_the_perturbed_loss() -> None:
    torch.manual_seed(0)
    model = RNNClassifier(CONFIG, 2, head_dropout=0.0).eval()
    tokens, lengths, labels = padded_batch()
    clean, delta = adversarial_delta(model, tokens, lengths, labels, epsilon=3.0)
    perturbed = F.cross_entropy(model(tokens, lengths, delta), labels)
    combined = adversarial_loss(model, tokens, lengths, labels, epsilon=3.0)
    torch.testing.assert_close(combined, (clean + perturbed) / 2)
    combined.backward()  # the clean pass's graph was kept for this
    assert model.encoder.embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("weight", [1.0, 0.75])
def test_back_propagating_the_clean_half_first_gives_the_same_gradients(weight: float
                                                                        ) -> None:
    """fit's path (the clean half back-propagated with the probe) against back-propagating
    the mean once: the same loss value, perturbation and gradients."""
    torch.manual_seed(0)
    model = RNNClassifier(CONFIG, 2, head_dropout=0.0).eval()
    tokens, lengths, labels = padded_batch()
    once = adversarial_loss(model, tokens, lengths, labels, epsilon=3.0)
    (once * weight).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    parts: list[float] = []

    def backward(part: torch.Tensor) -> None:
        parts.append(part.item())
        (part * weight).backward()

    split = adversarial_loss(model, tokens, lengths, labels, epsilon=3.0, backward=backward)
    assert len(parts) == 1  # the clean half, back-propagated inside
    torch.testing.assert_close(split, once.detach())
    (split * weight).backward()  # only the perturbed half's graph is left
    assert all(p.grad is not None for p in model.parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-5, atol=1e-7, msg=name)


def test_epsilon_zero_is_the_plain_loss_and_training_with_it_learns() -> None:
    runtime = setup(RuntimeParams(device="cpu", threads=1, precision="fp32", seed=0))
    train, valid = keyword_corpus(256, 0), keyword_corpus(64, 1)
    model = RNNClassifier(CONFIG, 2)
    batch = next(iter(ClassifierTask(train, valid, 16, 20, 0, runtime.device).batches(1)))
    plain = ClassifierTask(train, valid, 16, 20, 0, runtime.device, adversarial_epsilon=0.0)
    model.eval()
    torch.testing.assert_close(plain.loss(model, batch),
                               F.cross_entropy(model(batch[0], batch[1]), batch[2]))

    task = ClassifierTask(train, valid, 16, 20, 0, runtime.device, adversarial_epsilon=1.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    result = fit(model, task, optimizer, None, runtime, epochs=8, clip=1.0,
                 monitor="valid_accuracy", higher_is_better=True)
    assert result.best["valid_accuracy"] >= 0.85  # label 1 iff token 7 occurs


@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.25, 0.3])
def test_a_fraction_of_the_steps_is_adversarial_evenly_spread(fraction: float) -> None:
    chosen = [adversarial_on(step, fraction) for step in range(1000)]
    assert sum(chosen) == round(1000 * fraction)
    # evenly spread: any 10 consecutive steps hold 10 x fraction of them, give or take one
    assert all(abs(sum(chosen[i:i + 10]) - 10 * fraction) < 1 for i in range(990))


def test_with_a_fraction_the_other_steps_are_plain_and_a_resumed_epoch_chooses_alike() -> None:
    runtime = setup(RuntimeParams(device="cpu", threads=1, precision="fp32", seed=0))
    train, valid = keyword_corpus(128, 0), keyword_corpus(32, 1)
    model = RNNClassifier(CONFIG, 2).eval()
    task = ClassifierTask(train, valid, 16, 20, 0, runtime.device, adversarial_epsilon=1.0,
                          adversarial_fraction=0.5)
    chosen, losses = [], []
    for batch in task.batches(1):
        chosen.append(task.adversarial_step)
        tokens, lengths, labels = batch
        plain = F.cross_entropy(model(tokens, lengths), labels)
        losses.append((task.loss(model, batch), plain))
    assert chosen == [False, True] * 4
    for (loss, plain), adversarial in zip(losses, chosen, strict=True):
        if adversarial:  # the mean with the perturbed loss, which is higher
            assert loss.item() > plain.item()
        else:
            torch.testing.assert_close(loss, plain)
    resumed = [task.adversarial_step for _ in task.batches(1, start=3)]
    assert resumed == chosen[3:]
    off = ClassifierTask(train, valid, 16, 20, 0, runtime.device, adversarial_fraction=0.5)
    assert not any(off.adversarial_step for _ in off.batches(1))


ONE_EPOCH = """
import sys
import torch
from pipeline import distributed
from pipeline.config import RuntimeParams
from pipeline.models import EncoderConfig, RNNClassifier
from pipeline.runtime import setup
from pipeline.tasks import ClassifierTask
from pipeline.training import fit
from tests.test_training import keyword_corpus

runtime = setup(RuntimeParams(device="cpu", threads=1, precision="fp32", seed=0))
torch.manual_seed(0)
config = EncoderConfig(vocab_size=40, embedding_dim=16, hidden=16, layers=2, dropout=0.0,
                       embedding_dropout=0.0, input_dropout=0.0)
model = RNNClassifier(config, 2, head_dropout=0.0)
TASK
fit(model, task, torch.optim.SGD(model.parameters(), lr=0.1), None, runtime, epochs=1,
    clip=100.0, monitor="valid_accuracy", higher_is_better=True)
if distributed.is_main():
    torch.save(model.state_dict(), sys.argv[2])
"""


def assert_torchrun_matches_one_process(tmp_path: Path, script: str, epsilon: str,
                                        relative: float | None = None) -> None:
    """``script`` (ONE_EPOCH with its TASK filled in; argv: epsilon, output file) trains an
    RNN classifier one epoch: under ``torchrun`` with two
    processes, alone, and alone with epsilon 0. The first two must give the same weights,
    the third other ones (so that epsilon did something). With ``relative``, "the same" is
    measured against what epsilon changed: in every tensor, the largest torchrun-vs-alone
    difference must stay under ``relative`` times the largest alone-vs-epsilon-0 one (for a
    term whose whole effect on the weights is near fp32 rounding of the rest)."""
    path = tmp_path / "one_epoch.py"
    path.write_text(script)
    env = {"PYTHONPATH": str(REPO)}
    for launcher, out in ((["--nproc_per_node=2"], "two.pt"), (None, "one.pt"),
                          (None, "plain.pt")):
        prefix = (["-m", "torch.distributed.run", "--standalone", *launcher] if launcher
                  else [])
        run([sys.executable, *prefix, str(path), "0" if out == "plain.pt" else epsilon,
             str(tmp_path / out)], cwd=REPO, env=env, timeout=180)
    one, two, plain = (torch.load(tmp_path / f, weights_only=True)
                       for f in ("one.pt", "two.pt", "plain.pt"))
    for name, tensor in one.items():
        if relative is None:
            torch.testing.assert_close(two[name], tensor, rtol=1e-4, atol=1e-6)
        else:
            effect = (tensor - plain[name]).abs().max().item()
            gap = (two[name] - tensor).abs().max().item()
            assert gap <= relative * effect, (name, gap, effect)
    assert max((one[k] - plain[k]).abs().max() for k in one) > 1e-5  # epsilon changed them


@pytest.mark.slow
def test_under_torchrun_it_matches_one_process(tmp_path: Path) -> None:
    """The clean pass bypasses the DDP wrapper; every gradient must still be reduced once."""
    task = """task = ClassifierTask(keyword_corpus(128, 0), keyword_corpus(32, 1), 16, 20, 0,
                      runtime.device, adversarial_epsilon=float(sys.argv[1]))"""
    assert_torchrun_matches_one_process(tmp_path, ONE_EPOCH.replace("TASK", task), "1.0")
