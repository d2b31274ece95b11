from __future__ import annotations

import random
from collections import Counter

import pytest
import spacy

from pipeline.text import (
    EOS,
    PAD,
    UNK,
    UNK_ID,
    ChunkTokenizer,
    TokenizerPool,
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


def spacy_tokens(texts: list[str], lowercase: bool) -> list[list[str]]:
    """What the project promises to match: spaCy's tokenizer on each whole text."""
    tokenizer = spacy.blank("en").tokenizer
    return [[t.lower_ if lowercase else t.text for t in tokenizer(text) if not t.is_space]
            for text in texts]


# Special cases that spaCy re-applies across a space ("talkin' 'bout?!": the two quotes
# match the rule "''", which keeps "'bout" split), emoticons, abbreviations, URLs, and
# whitespace that is not a single space.
TRICKY = [
    "I was talkin' 'bout?! it, y'know?", "wow: ) yes", "so :) ok", "so : ) ok", "( : o )",
    "at 10 a.m. sharp, 5p.m. too", "he said ' s ok", "'Cause I can't", "C'mon ''quoted''",
    "o.O ^_^ (-_-) <3 :-D", "see http://example.com/a?b=c. or e-mail me@x.org!",
    "U.S.A. vs. U.K. (1999)", "tabs\there\nand  double  spaces ", " leading and trailing ",
    "", " ", "non\u00a0breaking", "Très «bien» 😀😀 — ok…", "' ' ' '", ": ) : ) :)",
]


@pytest.mark.parametrize("lowercase", [True, False])
def test_chunk_tokenizer_matches_spacy_on_tricky_text(lowercase: bool) -> None:
    tokenizer = ChunkTokenizer(spacy.blank("en").tokenizer, lowercase)
    assert tokenizer(TRICKY) == spacy_tokens(TRICKY, lowercase)
    assert tokenizer(TRICKY) == spacy_tokens(TRICKY, lowercase)  # again, from the cache
    # alone, "'bout?!" keeps its special case; after "talkin'" spaCy splits it
    assert tokenizer(["'bout?!", "I talkin' 'bout?!"]) == [
        ["'bout", "?", "!"], ["i" if lowercase else "I", "talkin", "'", "'", "bout", "?", "!"]]


def test_chunk_tokenizer_matches_spacy_on_random_special_case_soup() -> None:
    """Random texts glued from spaCy's own special cases and their pieces, so that chunk
    edges meet every kind of pattern token; with a tiny cache that keeps being emptied."""
    rules = sorted(spacy.blank("en").tokenizer.rules)
    pieces = rules + ["'", '"', "(", ")", ":", ";", "-", ".", ",", "!", "?", "s", "bout",
                      "D", "o", "_", "a.m", "em", "film", "Good", "isn't"]
    rng = random.Random(0)
    texts = []
    for _ in range(1500):
        chunks = ["".join(rng.choice(pieces) for _ in range(rng.choice([1, 1, 2, 3])))
                  for _ in range(rng.randint(1, 12))]
        texts.append(" ".join(chunks) if rng.random() > 0.1 else "\n".join(chunks))
    tokenizer = ChunkTokenizer(spacy.blank("en").tokenizer)
    tokenizer.MAX_CACHED = 500
    got = [doc for start in range(0, len(texts), 100)
           for doc in tokenizer(texts[start:start + 100])]
    assert got == spacy_tokens(texts, lowercase=True)


def test_in_process_tokenizer_is_kept_per_casing() -> None:
    """One process keeps its tokenizer (and cache) between calls, not across casings."""
    for lowercase in (True, False, True):
        [[tokens]] = list(tokenize(["Great :) film"], lowercase=lowercase))
        assert tokens == (["great", ":)", "film"] if lowercase else ["Great", ":)", "film"])


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


def test_a_pool_kept_for_several_calls_gives_the_same_tokens_as_one_process() -> None:
    """The tokenize stage's way: one pool for all splits, its workers' chunk caches kept
    from one call to the next (the second list repeats the first one's chunks)."""
    first = [f"Film {i}: it wasn't bad :) was it? {'Loved' if i % 2 else 'hated'} it."
             for i in range(41)]
    second = [f"{text} And 'bout time, talkin' 'bout it!" for text in reversed(first)]
    expected = [[doc for batch in tokenize(texts, workers=1, batch_size=5) for doc in batch]
                for texts in (first, second)]
    with TokenizerPool(workers=2, batch_size=5) as pool:
        got = [[doc for batch in pool.token_lists(texts) for doc in batch]
               for texts in (first, second)]
        arrays = list(pool.arrow_batches(second))
    assert got == expected
    assert [doc for array in arrays for doc in array.to_pylist()] == expected[1]


def test_vocab_is_deterministic_and_bounded() -> None:
    counts = Counter({"b": 5, "a": 5, "c": 3, "rare": 1, UNK: 100})
    vocab = Vocab.build(counts, min_freq=2, max_size=5)
    assert vocab.itos == (PAD, UNK, EOS, "a", "b")  # ties alphabetical; specials kept once
    assert list(vocab.encode(["a", "c", "zzz"])) == [3, UNK_ID, UNK_ID]


def test_vocab_fingerprint_tells_same_size_vocabularies_apart() -> None:
    vocab = Vocab((PAD, UNK, EOS, "a", "b"))
    assert vocab.sha256 == Vocab((PAD, UNK, EOS, "a", "b")).sha256  # stable
    assert len(vocab.sha256) == 64
    assert vocab.sha256 != Vocab((PAD, UNK, EOS, "b", "a")).sha256  # order matters
    assert vocab.sha256 != Vocab((PAD, UNK, EOS, "a", "c")).sha256
    assert vocab.sha256 != Vocab((PAD, UNK, EOS, "a b")).sha256  # not a plain join
