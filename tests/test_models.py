from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.errors import PipelineError
from pipeline.models import (
    AdaptiveLogSoftmax,
    BagOfEmbeddings,
    EncoderConfig,
    LanguageModel,
    RNNClassifier,
    RNNEncoder,
    encoder_dict,
    load_checkpoint,
    picked,
    save_checkpoint,
)

CONFIG = EncoderConfig(vocab_size=50, embedding_dim=12, hidden=16, layers=2)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("softmax", ["adaptive", "full"])
def test_language_model_shapes_and_learning(cell: str, softmax: str) -> None:
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=50, embedding_dim=12, hidden=16, layers=2, cell=cell)
    model = LanguageModel(config, softmax, (20, 40))
    if softmax == "full":  # tied: one matrix for input and output words
        assert model.decoder.weight.data_ptr() == model.encoder.embedding.weight.data_ptr()
    tokens = torch.randint(3, 50, (4, 10))
    targets = torch.roll(tokens, -1, dims=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses, hidden = [], None
    for _ in range(30):
        loss, hidden = model(tokens, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5
    assert (hidden[0] if cell == "lstm" else hidden).shape == (2, 4, 16)


def test_classifier_ignores_padding() -> None:
    torch.manual_seed(0)
    model = RNNClassifier(CONFIG, n_classes=3).eval()
    tokens = torch.tensor([[5, 6, 7, 8]])
    padded = torch.tensor([[5, 6, 7, 8, 0, 0, 0]])
    with torch.no_grad():
        a = model(tokens, torch.tensor([4]))
        b = model(padded, torch.tensor([4]))
    assert a.shape == (1, 3)
    assert torch.allclose(a, b, atol=1e-6)


def test_bag_of_embeddings_is_a_mean() -> None:
    model = BagOfEmbeddings(50, 8, 2, dropout=0.0).eval()
    with torch.no_grad():
        padded = model(torch.tensor([[5, 6, 0, 0]]), torch.tensor([2]))
        plain = model.out(model.embedding.weight[[5, 6]].mean(0, keepdim=True))
    assert torch.allclose(padded, plain, atol=1e-6)


def test_checkpoint_round_trip_and_mismatches(tmp_path: Path) -> None:
    model = RNNClassifier(CONFIG, n_classes=2)
    config = {"encoder": encoder_dict(CONFIG), "n_classes": 2, "head_dropout": 0.3}
    path = tmp_path / "clf.pt"
    save_checkpoint(path, "rnn_classifier", config, model, {"label_names": ["neg", "pos"]})
    # plain data only: loads with weights_only=True (no pickled code)
    assert torch.load(path, weights_only=True)["label_names"] == ["neg", "pos"]
    loaded, _ = load_checkpoint(path, "rnn_classifier", vocab_size=50)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    with pytest.raises(PipelineError, match="vocabulary of 50 words but the current"):
        load_checkpoint(path, vocab_size=60)
    # a checkpoint written before fingerprints were recorded is checked by size only
    load_checkpoint(path, vocab_size=50, vocab_sha256="b" * 64)
    save_checkpoint(path, "rnn_classifier", config, model, {"vocab_sha256": "a" * 64})
    load_checkpoint(path, vocab_size=50, vocab_sha256="a" * 64)
    with pytest.raises(PipelineError, match="another vocabulary .same size"):
        load_checkpoint(path, vocab_size=50, vocab_sha256="b" * 64)
    with pytest.raises(PipelineError, match="expected 'language_model'"):
        load_checkpoint(path, "language_model")
    config["encoder"]["hidden"] = 32
    save_checkpoint(path, "rnn_classifier", config, model)
    with pytest.raises(PipelineError, match="does not match its model config"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(PipelineError, match="not a checkpoint written by this pipeline"):
        load_checkpoint(path)
    torch.save([1, 2], path)  # a torch file, but not the pipeline's dict
    with pytest.raises(PipelineError, match="holds a list, not a dict"):
        load_checkpoint(path)
    torch.save({"kind": "rnn_classifier"}, path)  # a dict without the model config
    with pytest.raises(PipelineError, match="not a checkpoint written by this pipeline"):
        load_checkpoint(path)


def test_layer_groups_cover_every_parameter_once() -> None:
    model = RNNClassifier(CONFIG, n_classes=2)
    groups = model.layer_groups()
    assert len(groups) == CONFIG.layers + 2  # embedding, each RNN layer, head
    flat = [id(p) for group in groups for p in group]
    assert sorted(flat) == sorted(id(p) for p in model.parameters())


def test_gradual_unfreezing_goes_top_down() -> None:
    from pipeline.stages.train import gradual_unfreezing

    model = RNNClassifier(CONFIG, n_classes=2)
    unfreeze = gradual_unfreezing(model)
    groups = model.layer_groups()
    unfreeze(1)
    assert [all(p.requires_grad for p in g) for g in groups] == [False, False, False, True]
    unfreeze(2)
    assert [all(p.requires_grad for p in g) for g in groups] == [False, False, True, True]
    unfreeze(4)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_weight_dropout_drops_recurrent_weights_in_training_only(cell: str) -> None:
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=50, embedding_dim=12, hidden=16, layers=2, cell=cell,
                           dropout=0.0, embedding_dropout=0.0, input_dropout=0.0,
                           weight_dropout=0.5)
    plain = EncoderConfig(**{**encoder_dict(config), "weight_dropout": 0.0})
    model, reference = RNNClassifier(config, 2), RNNClassifier(plain, 2)
    reference.load_state_dict(model.state_dict())
    tokens, lengths = torch.randint(3, 50, (4, 10)), torch.full((4,), 10)
    model.eval(), reference.eval()
    with torch.no_grad():  # evaluation uses the full weights
        assert torch.equal(model(tokens, lengths), reference(tokens, lengths))
    model.train(), reference.train()
    dropped, full = model(tokens, lengths), reference(tokens, lengths)
    assert not torch.allclose(dropped, full)
    dropped.sum().backward()
    grad = model.encoder.rnns[1].weight_hh_l0.grad
    assert grad is not None and grad.abs().sum() > 0
    # DropConnect: the zeroed recurrent weights get no gradient from this batch
    assert (grad == 0).float().mean() > 0.3
    assert torch.equal(model.encoder.rnns[0].weight_hh_l0, reference.encoder.rnns[0].weight_hh_l0)


def test_last_state_pooling_uses_the_last_real_step() -> None:
    torch.manual_seed(0)
    model = RNNClassifier(CONFIG, n_classes=2, pooling="last").eval()
    assert model.head[1].in_features == CONFIG.hidden
    with torch.no_grad():
        out, _ = model.encoder(torch.tensor([[5, 6, 7]]))
        expected = model.head(out[:, -1])
        padded = model(torch.tensor([[5, 6, 7, 0, 0]]), torch.tensor([3]))
    assert torch.allclose(expected, padded, atol=1e-6)


def test_backward_classifier_reads_each_review_reversed_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    backward = RNNClassifier(CONFIG, n_classes=2, backward=True).eval()
    forward = RNNClassifier(CONFIG, n_classes=2).eval()
    forward.load_state_dict(backward.state_dict())
    tokens = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])  # the second row is padded
    lengths = torch.tensor([4, 2])
    reversed_by_hand = torch.tensor([[8, 7, 6, 5], [10, 9, 0, 0]])
    with torch.no_grad():
        expected = forward(reversed_by_hand, lengths)
        assert torch.allclose(backward(tokens, lengths), expected, atol=1e-6)
        assert (forward(tokens, lengths) - expected).abs().max() > 1e-4  # order matters
    path = tmp_path / "backward.pt"
    save_checkpoint(path, "rnn_classifier", {"encoder": encoder_dict(CONFIG), "n_classes": 2,
                                             "head_dropout": 0.3, "backward": True}, backward)
    loaded, _ = load_checkpoint(path)
    assert loaded.backward
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(tokens, lengths), expected, atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_dropout_between_layers_is_locked(cell: str) -> None:
    """AWD-LSTM's variational dropout between the RNN layers: one mask per sequence, the
    same at every time step (nn.LSTM's own num_layers dropout draws a new one per step)."""
    torch.manual_seed(0)
    encoder = RNNEncoder(EncoderConfig(vocab_size=50, embedding_dim=8, hidden=32, layers=3,
                                       cell=cell, dropout=0.5, embedding_dropout=0.0,
                                       input_dropout=0.0)).train()
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for layer in range(3):
        def keep(module: nn.Module, args: tuple, out: tuple, layer: int = layer) -> None:
            seen[layer] = (args[0], out[0])  # this layer's (dropped) input, its output
        encoder.rnns[layer].register_forward_hook(keep)
    encoder(torch.randint(3, 50, (4, 12)))
    for layer in (1, 2):
        dropped, below = seen[layer][0], seen[layer - 1][1]
        # the mask over (sequence, unit): zero at every step or at none
        zero = dropped == 0
        assert zero.any() and not zero.all()
        assert torch.equal(zero.all(dim=1), zero.any(dim=1))
        kept = ~zero  # scaled by 1 / (1 - p)
        assert torch.allclose(dropped[kept], 2 * below[kept], atol=1e-5)
    encoder.eval()
    with torch.no_grad():  # no dropout in evaluation: the same output twice
        tokens = torch.randint(3, 50, (2, 5))
        assert torch.equal(encoder(tokens)[0], encoder(tokens)[0])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_hidden_state_is_stacked_like_a_multi_layer_rnn(cell: str) -> None:
    """[layers, B, H] (an LSTM's a pair), carried across calls as the LM's BPTT does."""
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=50, embedding_dim=8, hidden=16, layers=3, cell=cell)
    encoder = RNNEncoder(config).eval()
    tokens = torch.randint(3, 50, (2, 10))
    with torch.no_grad():
        whole, _ = encoder(tokens)
        first, hidden = encoder(tokens[:, :6])
        rest, _ = encoder(tokens[:, 6:], hidden)
    for state in hidden if isinstance(hidden, tuple) else (hidden,):
        assert state.shape == (3, 2, 16)
    assert torch.allclose(torch.cat([first, rest], dim=1), whole, atol=1e-6)


def test_checkpoints_of_one_multi_layer_rnn_still_load(tmp_path: Path) -> None:
    """Checkpoints written when the encoder was one nn.LSTM(num_layers=2) (keys
    encoder.rnn.weight_hh_l1, ...) load into today's per-layer encoder unchanged."""
    torch.manual_seed(0)
    model = RNNClassifier(CONFIG, n_classes=2).eval()
    old = nn.LSTM(CONFIG.embedding_dim, CONFIG.hidden, num_layers=2, batch_first=True)
    state = {key: value for key, value in model.state_dict().items()
             if not key.startswith("encoder.rnns.")}
    state.update({f"encoder.rnn.{key}": value for key, value in old.state_dict().items()})
    config = {"encoder": encoder_dict(CONFIG), "n_classes": 2, "head_dropout": 0.3}
    torch.save({"kind": "rnn_classifier", "config": config, "state_dict": state},
               tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt", "rnn_classifier")[0].eval()
    assert torch.equal(loaded.encoder.rnns[1].weight_hh_l0, old.weight_hh_l1)
    tokens = torch.randint(3, 50, (3, 7))
    with torch.no_grad():  # the same function as the old module computed
        expected, _ = old(loaded.encoder.embed(tokens))
        got, _ = loaded.encoder(tokens)
    assert torch.allclose(got, expected, atol=1e-6)


def test_embedding_dropout_drops_whole_word_types() -> None:
    encoder = RNNEncoder(EncoderConfig(vocab_size=50, embedding_dim=8, hidden=8, layers=1,
                                       embedding_dropout=0.5))
    tokens = torch.tensor([[5, 6, 5, 7, 5, 6] * 4])
    encoder.train()
    torch.manual_seed(0)
    embedded = encoder.embed(tokens)
    plain = encoder.embedding(tokens)
    scale = embedded[0, :, 0] / plain[0, :, 0]  # 0 (dropped) or 2 (kept, rescaled)
    assert set(scale.round().tolist()) <= {0.0, 2.0}
    for word in (5, 6, 7):  # one draw per word type: every occurrence shares it
        assert len(set(scale[tokens[0] == word].tolist())) == 1
    encoder.eval()
    assert torch.equal(encoder.embed(tokens), plain)


@pytest.mark.parametrize("rows", [1, 130, 300])
def test_adaptive_softmax_with_padded_tails_matches_pytorch(rows: int) -> None:
    torch.manual_seed(0)
    ours = AdaptiveLogSoftmax(16, 500, [50, 200], div_value=4.0)
    reference = nn.AdaptiveLogSoftmaxWithLoss(16, 500, [50, 200], div_value=4.0)
    reference.load_state_dict(ours.state_dict())  # same parameters, same keys
    inputs = torch.randn(rows, 16, requires_grad=True)
    targets = torch.randint(0, 500, (rows,))
    targets[0] = 499  # at least one tail word
    got, want = ours(inputs, targets), reference(inputs, targets)
    assert torch.allclose(got.output, want.output, atol=1e-6)
    grads_got = torch.autograd.grad(got.loss, [inputs, *ours.parameters()], allow_unused=True)
    grads_want = torch.autograd.grad(want.loss, [inputs, *reference.parameters()],
                                     allow_unused=True)  # a tail no target falls in
    for g, w in zip(grads_got, grads_want, strict=True):
        assert (g is None and w is None) or torch.allclose(g, w, atol=1e-6)
    with pytest.raises(RuntimeError, match="Target values"):
        ours(inputs, torch.full((rows,), 500))


def test_adaptive_softmax_loss_is_fp32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    ours = AdaptiveLogSoftmax(16, 500, [50, 200], div_value=4.0)
    inputs, targets = torch.randn(64, 16), torch.randint(0, 500, (64,))
    exact = ours(inputs, targets).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ours(inputs.bfloat16(), targets).loss
    assert loss.dtype == torch.float32
    assert abs(loss.item() - exact.item()) < 0.05


@pytest.mark.parametrize("autocast", [False, True])
def test_picked_equals_gather_bit_for_bit(autocast: bool) -> None:
    """picked (-nll_loss, kept out of autocast) replaced gather: identical values and
    gradients in fp32 and in bf16, so the faster step changed no model."""
    torch.manual_seed(0)
    logits = torch.randn(300, 70, requires_grad=True)
    targets = torch.randint(0, 70, (300,))
    upstream = torch.randn(300)
    results = []
    for pick in (picked, lambda lp, t: lp.gather(1, t.unsqueeze(1)).squeeze(1)):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            log_probs = torch.log_softmax(logits.bfloat16() if autocast else logits, dim=1)
            values = pick(log_probs, targets)
        (grad,) = torch.autograd.grad((values.float() * upstream).sum(), logits)
        results.append((values, grad))
    (values, grad), (want_values, want_grad) = results
    assert values.dtype == want_values.dtype == (torch.bfloat16 if autocast else torch.float32)
    assert torch.equal(values, want_values)
    assert torch.equal(grad, want_grad)


@pytest.mark.parametrize("pooling", ["concat", "last"])
@pytest.mark.parametrize("backward", [False, True])
def test_bpt3c_reads_long_batches_in_chunks_like_one_pass(pooling: str, backward: bool) -> None:
    """Chunked reading (BPT3C) carries the state across chunks: in eval mode it gives what
    one pass over the whole batch gives, rows ending inside the gradient-free prefix too."""
    torch.manual_seed(0)
    whole = RNNClassifier(CONFIG, n_classes=3, pooling=pooling, backward=backward).eval()
    chunked = RNNClassifier(CONFIG, n_classes=3, pooling=pooling, backward=backward,
                            grad_len=7, bptt=3).eval()
    chunked.load_state_dict(whole.state_dict())
    tokens = torch.randint(3, 50, (4, 20))
    lengths = torch.tensor([20, 17, 9, 2])  # prefix = the first 13 steps; 9 and 2 end in it
    for row, length in enumerate(lengths):
        tokens[row, length:] = 0
    with torch.no_grad():
        expected = whole(tokens, lengths)
        assert torch.allclose(chunked(tokens, lengths), expected, atol=1e-5)
        # batches no longer than grad_len take the one-pass path, bit for bit
        assert torch.equal(chunked(tokens[:, :7], lengths.clamp(max=7)),
                           whole(tokens[:, :7], lengths.clamp(max=7)))


def test_bpt3c_back_propagates_through_the_last_grad_len_steps_only() -> None:
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=50, embedding_dim=12, hidden=16, layers=2, dropout=0.0,
                           embedding_dropout=0.0, input_dropout=0.0)
    model = RNNClassifier(config, n_classes=2, grad_len=7, bptt=4)
    tokens = torch.arange(3, 23)[None, :]  # a different word at each of the 20 steps
    model(tokens, torch.tensor([20])).sum().backward()
    grad = model.encoder.embedding.weight.grad.norm(dim=1)
    assert torch.all(grad[3:16] == 0)  # the first 13 steps: read, not back-propagated
    assert torch.all(grad[16:23] > 0)  # the last 7 steps
    # the prefix still informs the prediction: through the carried state and the pooling
    with torch.no_grad():
        changed = tokens.clone()
        changed[0, :13] = torch.arange(30, 43)
        model.eval()
        assert (model(changed, torch.tensor([20])) - model(tokens, torch.tensor([20]))
                ).abs().max() > 1e-4


def test_bpt3c_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(CONFIG, n_classes=2, grad_len=6, bptt=3).eval()
    path = tmp_path / "bpt3c.pt"
    save_checkpoint(path, "rnn_classifier", {"encoder": encoder_dict(CONFIG), "n_classes": 2,
                                             "head_dropout": 0.3, "grad_len": 6, "bptt": 3},
                    model)
    loaded, _ = load_checkpoint(path)
    assert (loaded.grad_len, loaded.bptt) == (6, 3)
    tokens = torch.randint(3, 50, (2, 15))
    with torch.no_grad():
        assert torch.equal(loaded.eval()(tokens, torch.tensor([15, 15])),
                           model(tokens, torch.tensor([15, 15])))


def test_bpt3c_under_bf16_autocast_matches_one_pass() -> None:
    """The chunked path mixes fp32 running sums with bf16 chunk outputs (GPUs and bf16 CPUs
    train under autocast): it must stay as close to one pass as bf16 allows. A plain RNN
    cell: its output is bf16 under CPU autocast, and unlike oneDNN's bf16 LSTM it runs on
    CPUs without native bf16."""
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=50, embedding_dim=12, hidden=16, layers=2, cell="rnn")
    whole = RNNClassifier(config, n_classes=2).eval()
    chunked = RNNClassifier(config, n_classes=2, grad_len=5, bptt=4).eval()
    chunked.load_state_dict(whole.state_dict())
    tokens = torch.randint(3, 50, (3, 24))
    lengths = torch.tensor([24, 20, 3])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert whole.encoder(tokens)[0].dtype == torch.bfloat16
        expected, got = whole(tokens, lengths), chunked(tokens, lengths)
    assert got.dtype == expected.dtype
    assert torch.allclose(got.float(), expected.float(), atol=0.05)
