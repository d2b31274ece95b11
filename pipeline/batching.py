"""Batches from the memory-mapped id arrays written by the vocab stage.

* Language model: documents joined by ``<eos>`` into one stream, cut into ``batch``
  parallel rows, read ``bptt`` steps at a time (truncated BPTT).
* Classifiers: reviews bucketed by length so a batch holds similar lengths (little
  padding to compute on; models mask what is left), truncated to ``max_len`` tokens
  (``None``: whole, for BPT3C, where the model bounds what it back-propagates through).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import PipelineError
from pipeline.io import read_input
from pipeline.sampling import stratified_rows
from pipeline.text import EOS_ID, PAD_ID


@dataclass(frozen=True)
class Corpus:
    """One split: ids[offsets[i]:offsets[i+1]] is document i (memory-mapped)."""

    ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray | None

    @classmethod
    def load(cls, directory: Path, split: str) -> Corpus:
        ids = read_input(directory / f"{split}_ids.npy", "token ids",
                         lambda path: np.load(path, mmap_mode="r"))
        offsets = read_input(directory / f"{split}_offsets.npy", "token offsets", np.load)
        labels = None  # the unlabeled split has none; the others always do
        if split != "unlabeled":
            labels = read_input(directory / f"{split}_labels.npy", "labels", np.load)
        return cls(ids, offsets, labels)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, count: int | None) -> Corpus:
        if count is None or count >= len(self):
            return self
        offsets = self.offsets[: count + 1]
        labels = None if self.labels is None else self.labels[:count]
        return Corpus(self.ids[: offsets[-1]], offsets, labels)

    def reversed(self) -> Corpus:
        """Every document's tokens in reverse order (the backward language model's text).

        Documents come out in reverse order too; the language-model stream does not care.
        """
        ids = np.ascontiguousarray(self.ids[::-1])
        offsets = (self.offsets[-1] - self.offsets[::-1]).astype(self.offsets.dtype)
        labels = None if self.labels is None else self.labels[::-1].copy()
        return Corpus(ids, offsets, labels)

    def take(self, indices: np.ndarray) -> Corpus:
        """Documents ``indices`` (in that order), copied out of the memory map."""
        starts, ends = self.offsets[indices], self.offsets[np.asarray(indices) + 1]
        ids = [np.asarray(self.ids[a:b]) for a, b in zip(starts, ends, strict=True)]
        offsets = np.concatenate([[0], np.cumsum(ends - starts)]).astype(self.offsets.dtype)
        labels = None if self.labels is None else self.labels[indices]
        return Corpus(np.concatenate(ids) if ids else self.ids[:0], offsets, labels)

    @staticmethod
    def concat(first: Corpus, second: Corpus) -> Corpus:
        """The documents of ``first``, then those of ``second``, in memory: both labeled, or
        both text alone (:meth:`text`)."""
        if (first.labels is None) != (second.labels is None):
            raise PipelineError("Corpus.concat needs two labeled corpora or two unlabeled ones")
        ids = np.concatenate([np.asarray(first.ids[: first.offsets[-1]]),
                              np.asarray(second.ids[: second.offsets[-1]])])
        offsets = np.concatenate([first.offsets, first.offsets[-1] + second.offsets[1:]])
        labels = None if first.labels is None else np.concatenate(  # second's too, checked
            [first.labels, second.labels.astype(first.labels.dtype)])
        dtype = np.result_type(first.offsets.dtype, second.offsets.dtype)
        return Corpus(ids, offsets.astype(dtype), labels)

    def text(self) -> Corpus:
        """The same documents without their labels (text for semi-supervised training)."""
        return Corpus(self.ids, self.offsets, None)

    def labeled_sample(self, count: int | None, seed: int) -> Corpus:
        """A stratified random sample of ``count`` labeled documents (all when None).

        Every class keeps at least one example, so tiny samples can still train.
        """
        if count is None or count >= len(self):
            return self
        if self.labels is None:
            raise PipelineError("labeled_sample needs a labeled split")
        return self.take(stratified_rows(self.labels, count, seed,
                                         "classifier.train_examples"))


# ---------------------------------------------------------------- language model


def lm_stream(corpora: list[Corpus]) -> np.ndarray:
    """All documents back to back, each followed by ``<eos>``."""
    parts = []
    for corpus in corpora:
        ends = corpus.offsets[1:]
        parts.append(np.insert(np.asarray(corpus.ids), ends, EOS_ID))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


class BPTTBatches:
    """Endless truncated-BPTT windows over a stream laid out as ``batch_size`` rows.

    ``next()`` returns (inputs [B, T], targets [B, T], restarted); ``restarted`` is True
    when the stream wrapped around, so the caller resets the carried hidden state.
    """

    def __init__(self, stream: np.ndarray, batch_size: int, bptt: int) -> None:
        columns = len(stream) // batch_size
        if columns < 2:
            raise PipelineError(
                f"the language-model stream has {len(stream)} tokens: too few for "
                f"batch_size={batch_size} (need at least {2 * batch_size})"
            )
        if bptt >= columns:
            raise PipelineError(
                f"pretrain.bptt={bptt} is longer than each of the {batch_size} stream rows "
                f"({columns} tokens): lower bptt or batch_size"
            )
        self.data = torch.from_numpy(stream[: columns * batch_size].reshape(batch_size, columns))
        self.bptt = bptt
        self.position = 0

    @property
    def steps_per_pass(self) -> int:
        return (self.data.size(1) - 2) // self.bptt + 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        restarted = False
        if self.position >= self.data.size(1) - 1:
            self.position, restarted = 0, True
        length = min(self.bptt, self.data.size(1) - 1 - self.position)
        start = self.position
        self.position += length
        return (self.data[:, start:start + length], self.data[:, start + 1:start + 1 + length],
                restarted or start == 0)


# ---------------------------------------------------------------- classifiers


def truncate(ids: np.ndarray, max_len: int | None) -> np.ndarray:
    """Keep the first quarter and the last three quarters of ``max_len`` tokens (all: None).

    Reviews tend to open with the topic and close with the verdict; keeping both ends
    beats keeping only the start (Sun et al., 2019 found the same for BERT).
    """
    if max_len is None or len(ids) <= max_len:
        return ids
    head = max_len // 4
    return np.concatenate([ids[:head], ids[len(ids) - (max_len - head):]])


def bucket_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None
                   ) -> list[np.ndarray]:
    """Index batches of similar lengths; shuffled (chunks, then batches) when ``rng`` is given."""
    order = np.arange(len(lengths)) if rng is None else rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        piece = order[start:start + chunk]
        piece = piece[np.argsort(-lengths[piece], kind="stable")]
        batches.extend(piece[i:i + batch_size] for i in range(0, len(piece), batch_size))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(corpus: Corpus, indices: np.ndarray, max_len: int | None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Padded tokens [B, T], lengths [B] and labels [B] (None for unlabeled data)."""
    docs = [truncate(np.asarray(corpus.ids[corpus.offsets[i]:corpus.offsets[i + 1]]), max_len)
            for i in indices]
    docs = [d if len(d) else np.array([PAD_ID], dtype=np.int32) for d in docs]
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    tokens = np.full((len(docs), lengths.max()), PAD_ID, dtype=np.int64)
    for row, doc in enumerate(docs):
        tokens[row, : len(doc)] = doc
    labels = None if corpus.labels is None else torch.from_numpy(corpus.labels[indices])
    return torch.from_numpy(tokens), torch.from_numpy(lengths), labels


def classifier_batches(corpus: Corpus, batch_size: int, max_len: int | None,
                       rng: np.random.Generator | None, start: int = 0
                       ) -> Iterator[tuple[np.ndarray, tuple[torch.Tensor, ...]]]:
    """(indices, batch) pairs; ``start`` skips batches without collating them (resuming)."""
    lengths = corpus.lengths if max_len is None else np.minimum(corpus.lengths, max_len)
    for indices in bucket_batches(lengths, batch_size, rng)[start:]:
        yield indices, collate(corpus, indices, max_len)
