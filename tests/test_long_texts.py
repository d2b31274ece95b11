"""Serving reads only the start and end of a text far longer than the classifier reads,
with exactly the token ids that tokenizing it whole and truncating would give."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.batching import truncate
from pipeline.serving import TextClassifier
from pipeline.text import Vocab, clean_text, tokenize

# words spaCy splits, merges or special-cases, some across a space ('' from ' + ')
WORDS = ["talkin'", "'bout", "'", "''", ":)", ":-(", "can't", "U.S.", "e.g.", "--", "!!!",
         "(fine)", "\"quoted\"", "it's", "N.Y.", "$5.99", "...", "good", "bad", "film",
         "a", "the", "<br />", "&amp;", "10/10", "well-made", "o'clock", "'cause", "y'all"]


def texts(seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = [" ".join(rng.choice(WORDS, size=n)) for n in (5, 200, 700, 3000, 20000)]
    out.append("x" * 50_000)  # one 50,000-character token: no space to cut at
    out.append(" ".join(["tiny"] * 40 + ["x" * 8000] * 3 + ["end"] * 40))  # few tokens
    out.append("")
    return [clean_text(text) for text in out]


def classifier(cleaned: list[str], max_len: int | None) -> TextClassifier:
    tokens = sorted({t for batch in tokenize(cleaned) for doc in batch for t in doc})
    return TextClassifier(model=None, vocab=Vocab(("<pad>", "<unk>", *tokens)),  # type: ignore[arg-type]
                          label_names=["neg", "pos"], max_len=max_len, lowercase=True)


@pytest.mark.parametrize("max_len", [8, 64, 400])
@pytest.mark.parametrize("seed", [0, 1])
def test_start_and_end_give_the_same_ids_as_the_whole_text(seed: int, max_len: int) -> None:
    cleaned = texts(seed)
    model = classifier(cleaned, max_len)
    whole = [truncate(ids, max_len) for ids in model._ids(cleaned)]
    fast = [truncate(ids, max_len) for ids in model.encode(cleaned)]  # as predict_proba does
    assert len(fast) == len(whole)
    for i, (a, b) in enumerate(zip(fast, whole, strict=True)):
        assert np.array_equal(a, b), (i, len(cleaned[i]))


def test_a_huge_text_is_not_tokenized_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = clean_text(" ".join(np.random.default_rng(2).choice(WORDS, size=400_000)))
    model = classifier([huge[:100_000], huge[-100_000:]], 64)
    read: list[int] = []
    ids_of = model._ids
    monkeypatch.setattr(model, "_ids", lambda batch: read.append(sum(map(len, batch)))
                        or ids_of(batch))
    assert len(model.encode([huge])[0]) == 64
    assert sum(read) < 10_000 < len(huge)  # characters tokenized, of about 2 million
    model_whole = classifier([huge[:100_000], huge[-100_000:]], None)
    assert np.array_equal(model.encode([huge])[0],
                          truncate(model_whole.encode([huge])[0], 64))
