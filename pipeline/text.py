"""Text processing shared by the stages: cleaning, spaCy tokenization, vocabulary, id arrays."""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from typing import TypeVar

import numpy as np
import pyarrow as pa

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
SPECIALS = (PAD, UNK, EOS)
PAD_ID, UNK_ID, EOS_ID = 0, 1, 2

_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,200}>")  # <br />, <i>, </b>, <a href=...>
_SPACES = re.compile(r"\s+")
TOKEN_LISTS = pa.list_(pa.string())
T = TypeVar("T")


def clean_text(text: str) -> str:
    """Strip HTML tags (IMDB reviews carry ``<br />``), unescape entities, normalise spaces."""
    text = _TAG.sub(" ", text)
    text = html.unescape(text)
    text = unicodedata.normalize("NFC", text)
    return _SPACES.sub(" ", text).strip()


# ---------------------------------------------------------------- tokenization (spaCy)

_tokenizer = None
_lowercase = True


def _init_worker(lowercase: bool) -> None:
    global _tokenizer, _lowercase
    import spacy

    _tokenizer = spacy.blank("en").tokenizer
    _lowercase = lowercase


def _tokenize_batch(texts: Sequence[str]) -> list[list[str]]:
    assert _tokenizer is not None
    out = []
    for doc in _tokenizer.pipe(texts, batch_size=256):
        # Token.lower_ is str.lower() of the text, computed once per word type in spaCy's
        # vocabulary instead of once per token
        if _lowercase:
            out.append([t.lower_ for t in doc if not t.is_space])
        else:
            out.append([t.text for t in doc if not t.is_space])
    return out


def _tokenize_batch_to_arrow(texts: Sequence[str]) -> pa.ListArray:
    # One Arrow array travels back from a worker as a few flat buffers: far cheaper to
    # pickle and unpickle than millions of small str objects, and the parent (which
    # shares the two cores with the workers) writes it to Parquet without converting it.
    return pa.array(_tokenize_batch(texts), type=TOKEN_LISTS)


def _map_batches(function: Callable[[Sequence[str]], T], texts: Sequence[str],
                 lowercase: bool, workers: int, batch_size: int) -> Iterator[T]:
    batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    if workers <= 1 or len(batches) <= 1:
        _init_worker(lowercase)
        for batch in batches:
            yield function(batch)
        return
    with get_context("fork").Pool(workers, initializer=_init_worker,
                                  initargs=(lowercase,)) as pool:
        yield from pool.imap(function, batches)


def tokenize(texts: Sequence[str], lowercase: bool = True, workers: int = 1,
             batch_size: int = 1000) -> Iterator[list[list[str]]]:
    """Tokenize with spaCy's English tokenizer, yielding token lists batch by batch, in order.

    With ``workers > 1`` a process pool runs one tokenizer per process (cheaper to send
    back than spaCy Docs, which is why this beats ``nlp.pipe(n_process=…)``). The output
    is identical to one process.
    """
    yield from _map_batches(_tokenize_batch, texts, lowercase, workers, batch_size)


def tokenize_to_arrow(texts: Sequence[str], lowercase: bool = True, workers: int = 1,
                      batch_size: int = 1000) -> Iterator[pa.ListArray]:
    """:func:`tokenize`, each batch as one Arrow ``list<string>`` array (the tokenize stage's
    way: workers build the arrays, the parent only writes them)."""
    yield from _map_batches(_tokenize_batch_to_arrow, texts, lowercase, workers, batch_size)


# ---------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Vocab:
    itos: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "stoi", {tok: i for i, tok in enumerate(self.itos)})

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        stoi = self.stoi  # type: ignore[attr-defined]
        return np.fromiter((stoi.get(t, UNK_ID) for t in tokens), dtype=np.int32)

    @classmethod
    def build(cls, counts: Counter[str], min_freq: int, max_size: int) -> Vocab:
        # most frequent first; ties broken alphabetically so the vocabulary is deterministic
        ranked = sorted(
            ((tok, n) for tok, n in counts.items() if n >= min_freq and tok not in SPECIALS),
            key=lambda item: (-item[1], item[0]),
        )
        words = [tok for tok, _ in ranked[: max_size - len(SPECIALS)]]
        return cls(itos=SPECIALS + tuple(words))
