"""Text processing shared by the stages: cleaning, spaCy tokenization, vocabulary, id arrays."""

from __future__ import annotations

import hashlib
import html
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.pool import Pool
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from spacy.tokenizer import Tokenizer

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

class ChunkTokenizer:
    """spaCy's tokenizer, run once per distinct space-separated chunk instead of per text.

    spaCy tokenizes each space-separated chunk of a text on its own (prefixes, suffixes,
    infixes, special cases), then runs one pass over the whole text that re-applies
    special cases such as ``:)`` or ``'bout``; only that pass can look across a space. So
    this class keeps each distinct chunk's tokens (a review repeats most of its chunks
    from earlier reviews) and joins them. Where a special case *could* span a space (the
    last token of one chunk and the first of the next may be two consecutive tokens of a
    special case's pattern), those chunks are tokenized together by spaCy instead, and
    texts with any whitespace but single spaces go to spaCy whole. The result is the same
    token list as ``[t.lower_ for t in nlp.tokenizer(text) if not t.is_space]`` (``t.text``
    without ``lowercase``); tests compare the two.
    """

    # cached chunks per process (~250 bytes each), emptied beyond this
    MAX_CACHED = 1_000_000

    def __init__(self, tokenizer: Tokenizer, lowercase: bool = True) -> None:
        from spacy.attrs import IS_SPACE, LOWER, ORTH
        from spacy.tokenizer import Tokenizer as SpacyTokenizer

        self.tokenizer = tokenizer
        self.lowercase = lowercase
        self.attrs = [LOWER if lowercase else ORTH, IS_SPACE]
        # the special-case pass matches each rule's tokens as tokenized without special
        # cases; any two consecutive ones are what a match across a space would need
        plain = SpacyTokenizer(tokenizer.vocab, rules=None,
                               prefix_search=tokenizer.prefix_search,
                               suffix_search=tokenizer.suffix_search,
                               infix_finditer=tokenizer.infix_finditer,
                               token_match=tokenizer.token_match, url_match=tokenizer.url_match)
        pairs: set[tuple[str, str]] = set()
        for rule in tokenizer.rules:
            orths = [t.text for t in plain(rule)]
            pairs.update(zip(orths, orths[1:], strict=False))
        self.pairs = frozenset(pairs)
        self.lefts = frozenset(a for a, _ in pairs)
        self.rights = frozenset(b for _, b in pairs)
        self.left_lengths = sorted({len(a) for a in self.lefts})
        self.right_lengths = sorted({len(b) for b in self.rights})
        # chunk -> (its tokens, pattern tokens it may start with, ... it may end with)
        self.cache: dict[str, tuple[list[str], tuple[str, ...], tuple[str, ...]]] = {}
        self.strings: dict[int, str] = {}  # spaCy string hash -> str, one object per string

    def _doc_tokens(self, text: str) -> list[tuple[str, bool]]:
        """(string, is whitespace) of each of spaCy's tokens of ``text``."""
        strings, store = self.strings, self.tokenizer.vocab.strings
        out = []
        for key, space in self.tokenizer(text).to_array(self.attrs).tolist():
            try:
                string = strings[key]
            except KeyError:
                string = strings[key] = store[key]
            out.append((string, space))
        return out

    def _spacy(self, text: str) -> list[str]:
        return [string for string, space in self._doc_tokens(text) if not space]

    def _add(self, chunks: list[str]) -> None:
        for start in range(0, len(chunks), 5000):
            part = chunks[start:start + 5000]
            # one spaCy call for many chunks: a whitespace token between two chunks, which
            # no special case contains, keeps each chunk's tokens its own
            tokens = self._doc_tokens(" \n ".join(part))
            position = 0
            for chunk in part:
                words = []
                while position < len(tokens) and not tokens[position][1]:
                    words.append(tokens[position][0])
                    position += 1
                position += 1  # the separator
                self.cache[chunk] = (
                    words,
                    tuple(chunk[:n] for n in self.right_lengths if chunk[:n] in self.rights),
                    tuple(chunk[-n:] for n in self.left_lengths if chunk[-n:] in self.lefts))

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        chunked = [None if _ODD_SPACE.search(text) else text.split(" ") for text in texts]
        cache = self.cache
        missing = {chunk for chunks in chunked if chunks is not None
                   for chunk in chunks if chunk not in cache}
        if len(cache) + len(missing) > self.MAX_CACHED:  # bounded memory: start afresh
            cache.clear()
            missing = {chunk for chunks in chunked if chunks is not None for chunk in chunks}
        missing.discard("")
        if missing:
            self._add(sorted(missing))
        return [self._spacy(text) if chunks is None else self._join(chunks)
                for text, chunks in zip(texts, chunked, strict=True)]

    def _join(self, chunks: list[str]) -> list[str]:
        cache, pairs = self.cache, self.pairs
        out: list[str] = []
        together: list[str] = []  # chunks a special case may join: tokenized as one text
        previous, previous_count, previous_ends = "", 0, ()
        for chunk in chunks:
            if not chunk:
                continue
            words, starts, ends = cache[chunk]
            if previous_ends and starts and any((a, b) in pairs
                                                for a in previous_ends for b in starts):
                if not together:
                    together.append(previous)
                    del out[len(out) - previous_count:]
                together.append(chunk)
            else:
                if together:
                    out += self._spacy(" ".join(together))
                    together = []
                out += words
            previous, previous_count, previous_ends = chunk, len(words), ends
        if together:
            out += self._spacy(" ".join(together))
        return out


_ODD_SPACE = re.compile(r"[^\S ]|  ")  # whitespace other than single spaces
_tokenizer: ChunkTokenizer | None = None


def _load_tokenizer(lowercase: bool) -> None:
    global _tokenizer
    if _tokenizer is not None and _tokenizer.lowercase == lowercase:
        return  # kept between calls: loading spaCy's English rules takes ~0.3 s (serving)
    import spacy

    _tokenizer = ChunkTokenizer(spacy.blank("en").tokenizer, lowercase)


def _tokenize_batch(texts: Sequence[str]) -> list[list[str]]:
    assert _tokenizer is not None
    return _tokenizer(texts)


def _tokenize_batch_to_arrow(texts: Sequence[str]) -> pa.ListArray:
    # One Arrow array travels back from a worker as a few flat buffers: far cheaper to
    # pickle and unpickle than millions of small str objects, and the parent (which
    # shares the two cores with the workers) writes it to Parquet without converting it.
    return pa.array(_tokenize_batch(texts), type=TOKEN_LISTS)


class TokenizerPool:
    """Processes that tokenize batches of texts, kept for as long as the ``with`` block.

    spaCy is loaded once, in this process before the fork (importing it costs each new
    process 2-4 s), and each worker keeps its chunk cache from one call to the next: the
    tokenize stage's four splits share most of their chunks. Workers start with an empty
    cache. With ``workers <= 1``, or a single batch, the texts are tokenized in this process.
    """

    def __init__(self, lowercase: bool = True, workers: int = 1,
                 batch_size: int = 1000) -> None:
        self.lowercase, self.workers, self.batch_size = lowercase, workers, batch_size
        self._pool: Pool | None = None

    def __enter__(self) -> TokenizerPool:
        _load_tokenizer(self.lowercase)
        if self.workers > 1:
            assert _tokenizer is not None
            _tokenizer.cache.clear()  # what this process cached stays out of the workers
            self._pool = get_context("fork").Pool(self.workers)  # they inherit _tokenizer
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.terminate()  # as Pool's own ``with``: every result has been read
            self._pool.join()
            self._pool = None

    def _map(self, function: Callable[[Sequence[str]], T],
             texts: Sequence[str]) -> Iterator[T]:
        size = self.batch_size
        batches = [texts[i:i + size] for i in range(0, len(texts), size)]
        if self._pool is None or len(batches) <= 1:
            _load_tokenizer(self.lowercase)
            for batch in batches:
                yield function(batch)
            return
        yield from self._pool.imap(function, batches)

    def token_lists(self, texts: Sequence[str]) -> Iterator[list[list[str]]]:
        """The texts' token lists, batch by batch, in order."""
        return self._map(_tokenize_batch, texts)

    def arrow_batches(self, texts: Sequence[str]) -> Iterator[pa.ListArray]:
        """The same, each batch as one Arrow ``list<string>`` array (built by the worker)."""
        return self._map(_tokenize_batch_to_arrow, texts)


def tokenize(texts: Sequence[str], lowercase: bool = True, workers: int = 1,
             batch_size: int = 1000) -> Iterator[list[list[str]]]:
    """Tokenize with spaCy's English tokenizer, yielding token lists batch by batch, in order.

    Each process runs a :class:`ChunkTokenizer` (spaCy's tokenizer, once per distinct
    chunk between spaces; the same tokens as spaCy on each whole text). With
    ``workers > 1`` a process pool runs one per process (token strings are cheaper to send
    back than spaCy Docs, which is why this beats ``nlp.pipe(n_process=…)``). The output
    is identical to one process. To tokenize several lists of texts with one set of
    processes, use :class:`TokenizerPool`.
    """
    with TokenizerPool(lowercase, workers, batch_size) as pool:
        yield from pool.token_lists(texts)


def tokenize_to_arrow(texts: Sequence[str], lowercase: bool = True, workers: int = 1,
                      batch_size: int = 1000) -> Iterator[pa.ListArray]:
    """:func:`tokenize`, each batch as one Arrow ``list<string>`` array (the tokenize stage's
    way: workers build the arrays, the parent only writes them)."""
    with TokenizerPool(lowercase, workers, batch_size) as pool:
        yield from pool.arrow_batches(texts)


# ---------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Vocab:
    itos: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "stoi", {tok: i for i, tok in enumerate(self.itos)})

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def sha256(self) -> str:
        """Fingerprint of the words and their order: a model trained with one vocabulary reads
        nonsense through another of the same size, so checkpoints record this."""
        words = json.dumps(self.itos, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(words).hexdigest()

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
