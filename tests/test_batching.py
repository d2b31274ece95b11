from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.batching import (
    BPTTBatches,
    Corpus,
    bucket_batches,
    classifier_batches,
    collate,
    lm_stream,
    truncate,
)
from pipeline.errors import PipelineError
from pipeline.text import EOS_ID, PAD_ID


def corpus(docs: list[list[int]], labels: list[int] | None = None) -> Corpus:
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in docs], out=offsets[1:])
    ids = np.concatenate([np.asarray(d, dtype=np.int32) for d in docs])
    return Corpus(ids, offsets, None if labels is None else np.asarray(labels))


def test_lm_stream_separates_documents_with_eos() -> None:
    stream = lm_stream([corpus([[5, 6], [7]]), corpus([[8, 9, 10]])])
    assert stream.tolist() == [5, 6, EOS_ID, 7, EOS_ID, 8, 9, 10, EOS_ID]


def test_bptt_targets_are_next_tokens_and_stream_wraps() -> None:
    stream = np.arange(100, dtype=np.int64)
    batches = BPTTBatches(stream, batch_size=4, bptt=7)  # rows of 25 tokens
    x, y, restarted = next(batches)
    assert restarted and x.shape == (4, 7)
    assert torch.equal(y, x + 1)
    assert x[1, 0].item() == 25  # row 1 continues the stream from token 25
    seen = 7
    while True:
        x, y, restarted = next(batches)
        if restarted:
            break
        assert x[0, 0].item() == seen  # contiguous windows: the hidden state can carry over
        seen += x.size(1)
    assert seen == 24 and batches.steps_per_pass == 4


def test_bptt_longer_than_rows_is_refused() -> None:
    with pytest.raises(PipelineError, match="pretrain.bptt=70 is longer"):
        BPTTBatches(np.arange(200), batch_size=4, bptt=70)
    with pytest.raises(PipelineError, match="too few"):
        BPTTBatches(np.arange(5), batch_size=4, bptt=2)


def test_truncate_keeps_both_ends() -> None:
    ids = np.arange(20)
    assert truncate(ids, 30).tolist() == ids.tolist()
    assert truncate(ids, 8).tolist() == [0, 1, 14, 15, 16, 17, 18, 19]


def test_buckets_cover_every_document_once_with_similar_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 500, size=1000)
    batches = bucket_batches(lengths, 32, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    padding = sum(lengths[b].max() * len(b) - lengths[b].sum() for b in batches)
    assert padding / lengths.sum() < 0.05
    again = bucket_batches(lengths, 32, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))


def test_collate_pads_at_the_end() -> None:
    data = corpus([[5, 6, 7], [8], []], labels=[1, 0, 1])
    tokens, lengths, labels = collate(data, np.array([0, 1, 2]), max_len=10)
    assert tokens.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID], [PAD_ID, PAD_ID, PAD_ID]]
    assert lengths.tolist() == [3, 1, 1] and labels.tolist() == [1, 0, 1]


def test_no_max_len_keeps_whole_documents_for_bpt3c() -> None:
    docs = [list(range(3, 3 + n)) for n in (40, 5, 33, 2)]
    data = corpus(docs, labels=[0, 1, 0, 1])
    assert truncate(np.arange(50), None).tolist() == list(range(50))
    seen = {}
    for indices, (tokens, lengths, _) in classifier_batches(data, 2, None, None):
        for row, index in enumerate(indices):
            seen[int(index)] = tokens[row, : lengths[row]].tolist()
    assert seen == dict(enumerate(docs))
    # with a max_len, the same batches are truncated (and bucketed on truncated lengths)
    _, (tokens, lengths, _) = next(classifier_batches(data, 4, 8, None))
    assert tokens.size(1) == 8 and lengths.max() == 8


def test_labeled_sample_is_stratified_seeded_and_a_true_subset() -> None:
    rng = np.random.default_rng(0)
    docs = [rng.integers(3, 50, size=rng.integers(1, 9)) for _ in range(200)]
    labels = np.array([0] * 150 + [1] * 50)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    corpus = Corpus(np.concatenate(docs).astype(np.int32), offsets, labels)
    sample = corpus.labeled_sample(40, seed=1)
    assert len(sample) == 40 and np.bincount(sample.labels).tolist() == [30, 10]
    again = corpus.labeled_sample(40, seed=1)
    assert np.array_equal(sample.ids, again.ids) and np.array_equal(sample.labels, again.labels)
    assert not np.array_equal(corpus.labeled_sample(40, seed=2).ids, sample.ids)
    originals = {(tuple(d), int(y)) for d, y in zip(docs, labels, strict=True)}
    for i in range(len(sample)):
        doc = tuple(sample.ids[sample.offsets[i]:sample.offsets[i + 1]])
        assert (doc, int(sample.labels[i])) in originals
    assert corpus.labeled_sample(None, seed=1) is corpus
    with pytest.raises(PipelineError, match="train_examples=1 is fewer than the 2 classes"):
        corpus.labeled_sample(1, seed=1)


def test_reversed_corpus_reverses_every_document_and_keeps_labels() -> None:
    docs, labels = [[5, 6, 7], [], [8, 9]], [0, 1, 1]
    backward = corpus(docs, labels).reversed()
    got = [list(backward.ids[backward.offsets[i]:backward.offsets[i + 1]])
           for i in range(len(backward))]
    assert got == [[9, 8], [], [7, 6, 5]]  # documents in reverse order, each reversed
    assert list(backward.labels) == [1, 1, 0]
    # the backward LM stream is the forward stream's documents read from the end
    assert list(lm_stream([backward])) == [9, 8, EOS_ID, EOS_ID, 7, 6, 5, EOS_ID]


def test_labeled_sample_keeps_a_class_too_rare_to_stratify() -> None:
    """classifier.train_examples on data with a one-example class: the plain random sample
    sklearn falls back to used to drop it (and unbalance the rest)."""
    labels = np.array([0] * 20 + [1] * 20 + [2])
    offsets = np.arange(len(labels) + 1, dtype=np.int64)
    corpus = Corpus(np.arange(len(labels), dtype=np.int32), offsets, labels)
    for seed in range(20):
        sample = corpus.labeled_sample(6, seed)
        assert len(sample) == 6 and sorted(np.unique(sample.labels)) == [0, 1, 2]
        assert len(np.unique(sample.ids)) == 6  # six different documents


def test_concat_joins_two_labeled_or_two_unlabeled_corpora_but_not_one_of_each() -> None:
    first = corpus([[1, 2, 3], [4]], labels=[0, 1])
    second = corpus([[5, 6], [7, 8, 9], [10]], labels=[1, 1, 0])
    both = Corpus.concat(first, second)
    assert [both.ids[a:b].tolist() for a, b in zip(both.offsets[:-1], both.offsets[1:],
                                                   strict=True)] == [
        [1, 2, 3], [4], [5, 6], [7, 8, 9], [10]]
    assert both.labels.tolist() == [0, 1, 1, 1, 0]
    text = Corpus.concat(first.text(), second.text())
    assert text.labels is None and text.offsets.tolist() == both.offsets.tolist()
    assert first.text().ids is first.ids  # no copy
    with pytest.raises(PipelineError, match="two labeled corpora or two unlabeled"):
        Corpus.concat(first, second.text())
