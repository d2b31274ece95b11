"""The models, in plain PyTorch.

* :class:`RNNEncoder` — embedding -> multi-layer RNN / LSTM / GRU, with AWD-LSTM style
  embedding dropout (whole words), locked (variational) dropout on its input, between its
  layers and on its output, and weight dropout (DropConnect on the hidden-to-hidden matrices).
* :class:`LanguageModel` — encoder -> next-word softmax (adaptive, or full with tied weights).
* :class:`RNNClassifier` — encoder -> concat pooling [last, max, mean] -> linear; a
  ``backward`` one reads each review from its last token to its first (ULMFiT's backward
  model, fine-tuned from a language model trained on reversed text); optionally reads long
  reviews whole, in chunks, with gradients through the last steps only (BPT3C).
* :class:`BagOfEmbeddings` — mean of word embeddings -> linear (the classic baseline).

Checkpoints are plain dicts (config + state_dict) loadable with ``weights_only=True``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from pipeline.errors import PipelineError
from pipeline.text import PAD_ID

if TYPE_CHECKING:
    from pipeline.config import ModelParams

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int
    cell: str = "lstm"
    embedding_dim: int = 256
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.2
    embedding_dropout: float = 0.05
    input_dropout: float = 0.1
    weight_dropout: float = 0.0

    @classmethod
    def of(cls, model: ModelParams, vocab_size: int) -> EncoderConfig:
        """The encoder params.yaml's ``model`` section describes."""
        return cls(vocab_size=vocab_size, **model.model_dump())


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout with one mask per sequence, shared by every time step ([B, T, D] input)."""
    if not training or p == 0.0:
        return x
    mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)
    return x * mask


class RNNEncoder(nn.Module):
    """h_t = f(W_h h_{t-1} + W_e e_t + b), stacked ``layers`` deep (f per ``cell``)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim,
                                      padding_idx=PAD_ID)
        # one single-layer RNN per layer, so that the dropout between layers can be locked
        # (AWD-LSTM): nn.LSTM's own num_layers draws a new mask at every time step. Same
        # speed on CPU (benchmarks/README.md): smaller masks, one more kernel call
        self.rnns = nn.ModuleList(
            CELLS[config.cell](config.embedding_dim if layer == 0 else config.hidden,
                               config.hidden, batch_first=True)
            for layer in range(config.layers))
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        weight = self.embedding.weight
        embedded = F.embedding(tokens, weight, padding_idx=PAD_ID)
        p = self.config.embedding_dropout
        if self.training and p > 0:
            # drop whole word types (the same word is dropped everywhere in the batch);
            # one draw per word type, looked up per token: the same as masking the whole
            # matrix (AWD-LSTM) without two passes over the 30k x 256 weights per step
            keep = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p).div_(1 - p)
            embedded = embedded * F.embedding(tokens, keep)
        return embedded

    def forward(self, tokens: torch.Tensor, hidden: Hidden | None = None,
                embedding_delta: torch.Tensor | None = None) -> tuple[torch.Tensor, Hidden]:
        """tokens [B, T] -> outputs [B, T, hidden]; ``embedding_delta`` [B, T, embedding_dim]
        is added to the word vectors (adversarial training's perturbation).

        Padding goes at the end of each row, so (the RNN being unidirectional) outputs at
        real positions never see it; callers mask what lies past each length. Packed
        sequences would skip the padding too, but on CPU they fall off the fused
        oneDNN kernel and ran ~10x slower here, while length-bucketed batches leave
        almost no padding to skip.
        """
        x = self.embed(tokens)
        if embedding_delta is not None:
            x = x + embedding_delta
        x = locked_dropout(x, self.config.input_dropout, self.training)
        states = []
        for layer, rnn in enumerate(self.rnns):
            if layer > 0:
                x = locked_dropout(x, self.config.dropout, self.training)
            x, state = self.run_layer(rnn, x, layer_state(hidden, layer))
            states.append(state)
        return locked_dropout(x, self.config.dropout, self.training), stack_states(states)

    def run_layer(self, rnn: nn.RNNBase, x: torch.Tensor, hidden: Hidden | None
                  ) -> tuple[torch.Tensor, Hidden]:
        p = self.config.weight_dropout
        if self.training and p > 0:
            # DropConnect on W_h (AWD-LSTM): one mask per batch, the same at every time step,
            # so the fused RNN kernel still runs; the raw weights receive the gradients
            dropped = {name: F.dropout(weight, p, training=True)
                       for name, weight in rnn.named_parameters()
                       if name.startswith("weight_hh")}
            return functional_call(rnn, dropped, (x, hidden))
        return rnn(x, hidden)


def layer_state(hidden: Hidden | None, layer: int) -> Hidden | None:
    """Layer ``layer``'s slice [1, B, H] of a stacked hidden state [layers, B, H] (an LSTM's
    is a pair)."""
    if hidden is None:
        return None
    if isinstance(hidden, tuple):
        return tuple(h[layer:layer + 1] for h in hidden)  # type: ignore[return-value]
    return hidden[layer:layer + 1]


def stack_states(states: list[Hidden]) -> Hidden:
    """The layers' final states stacked as ``nn.LSTM(num_layers=L)`` returns them."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*states, strict=True))  # type: ignore[return-value]
    return torch.cat(states)  # type: ignore[arg-type]


def detach(hidden: Hidden) -> Hidden:
    if isinstance(hidden, tuple):
        return tuple(h.detach() for h in hidden)  # type: ignore[return-value]
    return hidden.detach()


def to_device(hidden: Hidden, device: torch.device) -> Hidden:
    if isinstance(hidden, tuple):
        return tuple(h.to(device) for h in hidden)  # type: ignore[return-value]
    return hidden.to(device)


class LanguageModel(nn.Module):
    def __init__(self, encoder: EncoderConfig, softmax: str = "adaptive",
                 cutoffs: tuple[int, ...] = (2000, 10000)) -> None:
        super().__init__()
        self.encoder = RNNEncoder(encoder)
        self.softmax = softmax
        vocab, hidden, emb = encoder.vocab_size, encoder.hidden, encoder.embedding_dim
        if softmax == "full":
            # tie the output matrix to the input embeddings; project when sizes differ
            self.projection = nn.Linear(hidden, emb) if hidden != emb else nn.Identity()
            self.decoder = nn.Linear(emb, vocab)
            self.decoder.weight = self.encoder.embedding.weight
        else:
            self.cutoffs = usable_cutoffs(cutoffs, vocab)
            self.adaptive = AdaptiveLogSoftmax(hidden, vocab, list(self.cutoffs),
                                               div_value=4.0)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor,
                hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """Mean next-word cross-entropy (nats) over the batch, and the new hidden state."""
        out, hidden = self.encoder(tokens, hidden)
        flat, flat_targets = out.reshape(-1, out.size(-1)), targets.reshape(-1)
        if self.softmax == "full":
            logits = self.decoder(self.projection(flat))
            loss = F.cross_entropy(logits.float(), flat_targets)
        else:
            loss = self.adaptive(flat, flat_targets).loss
        return loss, hidden


class AdaptiveLogSoftmax(nn.AdaptiveLogSoftmaxWithLoss):
    """PyTorch's adaptive softmax (Grave et al. 2017) whose tail clusters run on a row
    count rounded up to a multiple of ``ROW_BUCKET``.

    How many targets fall in each tail changes every batch; oneDNN builds (JIT-compiles)
    a new matmul kernel for each new shape, ~25 ms each in bf16, against ~1.5 ms for the
    matmul itself. Rounding the rows up lets a few cached kernels serve every batch. The
    padding rows repeat row 0 and are dropped before the loss. Same parameters and
    state_dict keys as the parent, so checkpoints load either way.
    """

    ROW_BUCKET = 128

    def forward(self, input_: torch.Tensor, target_: torch.Tensor
                ) -> nn.modules.adaptive._ASMoutput:
        if target_.dim() != 1 or input_.dim() != 2 or input_.size(0) != target_.size(0):
            return super().forward(input_, target_)  # unbatched or malformed: the parent's checks
        if target_.numel() and (target_.min() < 0 or target_.max() >= self.n_classes):
            raise RuntimeError(f"Target values should be in [0, {self.n_classes - 1}]")
        # log-probabilities summed in fp32: under bf16 autocast the parent's loss came out
        # in bf16 (steps of 0.06 nats near 10)
        output = input_.new_zeros(target_.size(0), dtype=torch.float32)
        head_targets = target_.clone()  # shortlist words as they are, tail words -> cluster id
        bounds = [0, *self.cutoffs]
        for i in range(1, len(bounds) - 1):
            rows = ((target_ >= bounds[i]) & (target_ < bounds[i + 1])).nonzero().squeeze(1)
            count = rows.numel()
            if count == 0:
                continue
            padded = -(-count // self.ROW_BUCKET) * self.ROW_BUCKET
            gathered = torch.cat([rows, rows.new_zeros(padded - count)])
            logits = self.tail[i - 1](input_.index_select(0, gathered))
            log_probs = F.log_softmax(logits, dim=1)[:count]
            local = picked(log_probs, target_[rows] - bounds[i])
            output = output.index_copy(0, rows, local.float())
            head_targets[rows] = self.shortlist_size + i - 1
        head_log_probs = F.log_softmax(self.head(input_), dim=1)
        output = output + picked(head_log_probs, head_targets).float()
        return nn.modules.adaptive._ASMoutput(output, (-output).mean())


def picked(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log_probs[row, targets[row]]`` for each row: the parent's ``gather``, computed as
    ``-nll_loss``. Same values and gradients bit for bit, but the backward writes each
    row's one gradient directly, where gather's went through a scatter-add that took 2.4x
    as long on CPU (head, 4,480 x 2,002 in bf16: 19.5 ms vs 8.3 ms with the log-softmax)."""
    with torch.autocast(log_probs.device.type, enabled=False):  # autocast would cast to fp32
        return -F.nll_loss(log_probs, targets, reduction="none")


def usable_cutoffs(cutoffs: tuple[int, ...], vocab_size: int) -> tuple[int, ...]:
    """Adaptive-softmax cutoffs that fit the vocabulary (tiny vocabularies get one split)."""
    kept = tuple(c for c in cutoffs if c < vocab_size - 1)
    return kept or (max(1, vocab_size // 2),)


class RNNClassifier(nn.Module):
    """Encoder -> pooling -> dropout -> linear.

    ``concat`` pooling (ULMFiT): [last hidden state, max-pool, mean-pool] over the real
    (unpadded) steps; ``last``: the last hidden state only (the classic RNN classifier).
    ``backward``: the model reverses each row's real tokens itself, so batching,
    inference and serving are the same for both directions.

    ``grad_len`` (BPT3C, ULMFiT's "BPTT for text classification"): a batch longer than
    ``grad_len`` steps is read in ``bptt``-step chunks, the hidden state carried from one
    to the next. Chunks before the last ``grad_len`` steps run without gradients and keep
    only running pooling sums, so memory stays that of a ``grad_len``-step batch however
    long the review; the last ``grad_len`` steps start from their final state and are
    back-propagated through as one sequence. Pooling covers every real step. ``None``:
    one pass over the whole batch (the caller truncates long reviews).
    """

    def __init__(self, encoder: EncoderConfig, n_classes: int, head_dropout: float = 0.3,
                 pooling: str = "concat", backward: bool = False,
                 grad_len: int | None = None, bptt: int = 70) -> None:
        super().__init__()
        self.encoder = RNNEncoder(encoder)
        self.pooling = pooling
        self.backward = backward
        self.grad_len = grad_len
        self.bptt = bptt
        width = 3 * encoder.hidden if pooling == "concat" else encoder.hidden
        self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(width, n_classes))

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters bottom-up: embedding, each RNN layer, head (ULMFiT's layer groups)."""
        layers = [list(rnn.parameters()) for rnn in self.encoder.rnns]
        return [list(self.encoder.embedding.parameters()), *layers, list(self.head.parameters())]

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor,
                embedding_delta: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, classes]. ``embedding_delta`` [B, :meth:`gradient_steps`, embedding_dim]
        perturbs the word vectors of the steps that get gradients, in the order the encoder
        reads them (reversed for a backward model)."""
        if self.backward:
            tokens = reverse_padded(tokens, lengths)
        split, hidden, prefix = 0, None, None
        if self.grad_len is not None and tokens.size(1) > self.grad_len:  # BPT3C
            split = tokens.size(1) - self.grad_len  # the last grad_len steps get gradients
            hidden, prefix = self.read_prefix(tokens[:, :split], lengths)
        out, _ = self.encoder(tokens[:, split:], hidden, embedding_delta)
        return self.head(self.pool(out, lengths - split, lengths, prefix))

    def gradient_steps(self, width: int) -> int:
        """How many of a ``width``-step batch's steps are back-propagated through."""
        return width if self.grad_len is None else min(width, self.grad_len)

    @torch.no_grad()
    def read_prefix(self, tokens: torch.Tensor, lengths: torch.Tensor
                    ) -> tuple[Hidden, ChunkPooling]:
        """BPT3C: read the steps before the last ``grad_len`` in ``bptt``-step chunks, with no
        gradients; the final hidden state and running pooling values are what is left."""
        pooled = ChunkPooling(tokens.size(0), self.encoder.config.hidden, tokens.device)
        hidden: Hidden | None = None
        for start in range(0, tokens.size(1), self.bptt):
            out, hidden = self.encoder(tokens[:, start:start + self.bptt], hidden)
            pooled.add(out, lengths - start)
        return hidden, pooled

    def pool(self, out: torch.Tensor, remaining: torch.Tensor, lengths: torch.Tensor,
             prefix: ChunkPooling | None) -> torch.Tensor:
        """Pooled features of ``out`` [B, T, H], whose first ``remaining`` steps are real
        (rows that ended in the ``prefix`` have none), combined with the prefix's."""
        last, max_pool, total = masked_pooling(out, remaining)
        if prefix is not None:
            last = torch.where((remaining > 0)[:, None], last, prefix.last.to(out.dtype))
        if self.pooling == "last":
            return last
        if prefix is None:
            mean_pool = total / lengths[:, None].to(out.dtype)
        else:
            max_pool = torch.maximum(max_pool, prefix.max.to(out.dtype))
            mean_pool = ((total.float() + prefix.sum) / lengths[:, None]).to(out.dtype)
        return torch.cat([last, max_pool, mean_pool], dim=-1)


def masked_pooling(out: torch.Tensor, remaining: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Over each row's first ``remaining`` steps of ``out`` [B, T, H] (the rest is padding,
    or another chunk's): the state at the last of them (meaningless for rows with none
    here), the max and the sum."""
    rows = torch.arange(out.size(0), device=out.device)
    steps = torch.arange(out.size(1), device=out.device)
    mask = (steps[None, :] < remaining[:, None]).unsqueeze(-1)  # [B, T, 1], False on padding
    last = out[rows, (remaining - 1).clamp(0, out.size(1) - 1)]
    return (last, out.masked_fill(~mask, float("-inf")).max(dim=1).values,
            out.masked_fill(~mask, 0.0).sum(dim=1))


class ChunkPooling:
    """Running last state, max and sum (fp32) over the real steps of chunks read in turn."""

    def __init__(self, batch: int, hidden: int, device: torch.device) -> None:
        self.last = torch.zeros(batch, hidden, device=device)
        self.max = torch.full((batch, hidden), float("-inf"), device=device)
        self.sum = torch.zeros(batch, hidden, device=device)

    def add(self, out: torch.Tensor, remaining: torch.Tensor) -> None:
        """``out`` [B, T, H] of one chunk; ``remaining``: each row's real steps from its start."""
        last, max_pool, total = masked_pooling(out.float(), remaining)
        ends_here = (remaining > 0) & (remaining <= out.size(1))
        self.last = torch.where(ends_here[:, None], last, self.last)
        self.max = torch.maximum(self.max, max_pool)
        self.sum += total


def reverse_padded(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's first ``length`` tokens in reverse order; the padding stays at the end."""
    steps = torch.arange(tokens.size(1), device=tokens.device)[None, :]
    source = lengths[:, None] - 1 - steps
    source = torch.where(source >= 0, source, steps)  # padding positions map to themselves
    return tokens.gather(1, source)


class BagOfEmbeddings(nn.Module):
    """Mean of the word embeddings (padding excluded) -> dropout -> linear."""

    def __init__(self, vocab_size: int, embedding_dim: int, n_classes: int,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embedding_dim, mode="mean",
                                         padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(embedding_dim, n_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.embedding(tokens)))


# ---------------------------------------------------------------- checkpoints


def build_model(kind: str, config: dict) -> nn.Module:
    encoder = EncoderConfig(**config["encoder"]) if "encoder" in config else None
    if kind == "language_model":
        return LanguageModel(encoder, config["softmax"], tuple(config["cutoffs"]))
    if kind == "rnn_classifier":
        return RNNClassifier(encoder, config["n_classes"], config["head_dropout"],
                             config.get("pooling", "concat"), config.get("backward", False),
                             config.get("grad_len"), config.get("bptt", 70))
    if kind == "bag_of_embeddings":
        return BagOfEmbeddings(config["vocab_size"], config["embedding_dim"],
                               config["n_classes"], config["dropout"])
    raise PipelineError(f"unknown model kind {kind!r}")


def encoder_dict(config: EncoderConfig) -> dict:
    return asdict(config)


def save_checkpoint(path: Path, kind: str, config: dict, model: nn.Module,
                    extra: dict | None = None) -> None:
    from pipeline.io import atomic_path

    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"kind": kind, "config": config, "state_dict": state, **(extra or {})}, tmp)


def read_checkpoint(path: Path) -> dict:
    """The saved dict of any of the pipeline's model files (the TF-IDF baseline's too),
    read with ``weights_only=True``: tensors, numbers and strings, no pickled code."""
    if not Path(path).is_file():
        raise PipelineError(f"missing model file: {path} (run the earlier stages: dvc repro)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupted, not a torch file: many exception types
        raise PipelineError(f"{path} is not a checkpoint written by this pipeline: {exc}") from exc
    if not isinstance(blob, dict):
        raise PipelineError(f"{path} is not a checkpoint written by this pipeline "
                            f"(holds a {type(blob).__name__}, not a dict)")
    return blob


# encoder.rnn.<name>_l<layer>: one multi-layer RNN module, before the per-layer ones
OLD_RNN_KEY = re.compile(r"((?:.*\.)?)rnn\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)")


def per_layer_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state_dict with the keys of checkpoints written before the encoder ran one RNN
    per layer (``encoder.rnn.weight_hh_l1``) renamed to today's (``encoder.rnns.1.weight_hh_l0``):
    the same tensors, so those checkpoints still load."""
    def renamed(key: str) -> str:
        match = OLD_RNN_KEY.fullmatch(key)
        if match is None:
            return key
        prefix, name, layer = match.groups()
        return f"{prefix}rnns.{layer}.{name}_l0"
    return {renamed(key): value for key, value in state.items()}


def load_checkpoint(path: Path, expect_kind: str | None = None, vocab_size: int | None = None,
                    vocab_sha256: str | None = None) -> tuple[nn.Module, dict]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``), checked
    against the vocabulary it will read (its size, and its fingerprint where the checkpoint
    records one)."""
    return model_from_checkpoint(read_checkpoint(path), path, expect_kind, vocab_size,
                                 vocab_sha256)


def architecture(config: EncoderConfig) -> tuple:
    """What must match between two encoders for one's weights to load into the other
    (dropouts may differ)."""
    return (config.vocab_size, config.cell, config.embedding_dim, config.hidden, config.layers)


def load_language_model(path: Path, encoder: EncoderConfig, vocab_sha256: str, direction: str,
                        user: str, remedy: str = "") -> LanguageModel:
    """The language model saved at ``path``, checked to fit what ``user`` (who loads it) asks
    for: the vocabulary, the direction and the encoder's architecture (dropouts may differ).
    ``remedy`` ends the architecture mismatch's message."""
    lm, blob = load_checkpoint(path, "language_model", encoder.vocab_size, vocab_sha256)
    found = blob.get("direction", "forward")
    if found != direction:
        raise PipelineError(f"{path} is a {found} language model; {user} needs a {direction} one")
    if architecture(lm.encoder.config) != architecture(encoder):
        raise PipelineError(f"{path} was trained with encoder {lm.encoder.config}, but "
                            f"params.yaml (model) asks for {encoder}{remedy}")
    return lm


def model_from_checkpoint(blob: dict, path: Path, expect_kind: str | None = None,
                          vocab_size: int | None = None,
                          vocab_sha256: str | None = None) -> tuple[nn.Module, dict]:
    """:func:`load_checkpoint` for a dict already read from ``path``."""
    try:
        kind, config = blob["kind"], blob["config"]
    except (KeyError, TypeError) as exc:
        raise PipelineError(f"{path} is not a checkpoint written by this pipeline: {exc}") from exc
    if expect_kind and kind != expect_kind:
        raise PipelineError(f"{path} holds a {kind!r} model, expected {expect_kind!r}")
    found_vocab = config.get("encoder", config).get("vocab_size")
    if vocab_size is not None and found_vocab != vocab_size:
        raise PipelineError(
            f"{path} was trained with a vocabulary of {found_vocab} words but the current "
            f"vocabulary has {vocab_size}: rerun the stages after vocab (dvc repro)"
        )
    if vocab_sha256 is not None and blob.get("vocab_sha256", vocab_sha256) != vocab_sha256:
        raise PipelineError(
            f"{path} was trained with another vocabulary (same size, other words or order; "
            f"sha256 {blob['vocab_sha256'][:12]}… vs {vocab_sha256[:12]}…): use the vocabulary "
            "it was trained with, or rerun the stages after vocab (dvc repro)"
        )
    model = build_model(kind, config)
    try:
        model.load_state_dict(per_layer_keys(blob["state_dict"]))
    except RuntimeError as exc:
        raise PipelineError(f"{path} does not match its model config: {exc}") from exc
    return model, blob
