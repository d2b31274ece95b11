from __future__ import annotations

from collections import Counter

from pipeline.text import (
    EOS,
    PAD,
    UNK,
    UNK_ID,
    Vocab,
    clean_text,
    tokenize,
    tokenize_to_arrow,
)


def test_clean_text_strips_markup_and_spaces() -> None:
    raw = "Great film!<br /><br />Really.<BR>Truly &amp; honestly<br/>  end "
    assert clean_text(raw) == "Great film! Really. Truly & honestly end"
    assert clean_text("   <br />  ") == ""
    assert clean_text('<a href="x">Link</a> &lt;3 <i>it</i>') == "Link <3 it"
    assert clean_text("2 < 3 and 5 > 4") == "2 < 3 and 5 > 4"


def test_tokenize_uses_spacy_rules_and_lowercases() -> None:
    [[tokens]] = list(tokenize(["Don't stop, it's GREAT!"]))
    assert tokens == ["do", "n't", "stop", ",", "it", "'s", "great", "!"]
    [[cased]] = list(tokenize(["Don't"], lowercase=False))
    assert cased == ["Do", "n't"]


def test_parallel_tokenization_matches_one_process() -> None:
    texts = [f"Review number {i}: it wasn't bad, was it? (score {i % 10}/10)" for i in range(97)]
    single = [doc for batch in tokenize(texts, workers=1, batch_size=10) for doc in batch]
    parallel = [doc for batch in tokenize(texts, workers=2, batch_size=10) for doc in batch]
    assert parallel == single
    assert len(single) == 97


def test_arrow_tokenization_matches_token_lists() -> None:
    """The stage's path (workers send Arrow arrays) gives the same tokens, in order."""
    texts = [f"Review {i}: it wasn't bad—was it? «Très» {'😀' * (i % 3)}" for i in range(53)]
    expected = [doc for batch in tokenize(texts, workers=1, batch_size=7) for doc in batch]
    for workers in (1, 2):
        arrays = list(tokenize_to_arrow(texts, workers=workers, batch_size=7))
        assert len(arrays) == 8
        assert [doc for array in arrays for doc in array.to_pylist()] == expected


def test_vocab_is_deterministic_and_bounded() -> None:
    counts = Counter({"b": 5, "a": 5, "c": 3, "rare": 1, UNK: 100})
    vocab = Vocab.build(counts, min_freq=2, max_size=5)
    assert vocab.itos == (PAD, UNK, EOS, "a", "b")  # ties alphabetical; specials kept once
    assert list(vocab.encode(["a", "c", "zzz"])) == [3, UNK_ID, UNK_ID]
