"""A tiny dataset in the IMDB archive layout, written for these tests (not IMDB text).

Reviews are assembled from short sentences written here; each review's polarity
decides which sentences it draws from, so a classifier can learn something.
"""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

POSITIVE = [
    "I loved every minute of this film.",
    "The acting was wonderful and the story moved me.",
    "A brilliant, funny and warm picture.",
    "The director knows exactly what she is doing.",
    "Great music, great cast, great fun.",
    "I would happily watch it again tomorrow.",
    "One of the best movies I have seen this year.",
    "The ending left me smiling for hours.",
    "Beautiful photography and a clever script.",
    "An excellent cast makes this a delight.",
]
NEGATIVE = [
    "I hated nearly every minute of this film.",
    "The acting was wooden and the story made no sense.",
    "A dull, boring and lifeless picture.",
    "The director has no idea what he is doing.",
    "Terrible music, awful cast, no fun at all.",
    "I want those two hours of my life back.",
    "One of the worst movies I have seen this year.",
    "The ending was so bad that I laughed at it.",
    "Ugly photography and a lazy script.",
    "A poor cast makes this a chore.",
]
NEUTRAL = [
    "The film runs for about two hours.",
    "It was shown at a festival last spring.",
    "My friend recommended it to me.",
    "The plot follows a family in a small town.",
    "There is a long scene set on a train.",
    "I saw it on a rainy Sunday afternoon.",
]


def review(rng: random.Random, polarity: str) -> str:
    pool = {"pos": POSITIVE, "neg": NEGATIVE, "unsup": POSITIVE + NEGATIVE}[polarity]
    sentences = rng.sample(pool, 3) + rng.sample(NEUTRAL, 2)
    rng.shuffle(sentences)
    return " ".join(sentences[:3]) + "<br /><br />" + " ".join(sentences[3:])


def rating(rng: random.Random, polarity: str) -> int:
    return {"pos": rng.randint(7, 10), "neg": rng.randint(1, 4), "unsup": 0}[polarity]


def movie_url(review_id: int) -> str:
    """IMDB's URL for review ``review_id`` of a list: here two reviews of each polarity
    per movie, every movie with positive and negative reviews (as in IMDB)."""
    return f"http://www.imdb.com/title/tt{1000000 + review_id // 2}/usercomments"


def build_members(per_class_train: int = 20, per_class_test: int = 10, unlabeled: int = 30,
                  seed: int = 0, urls: bool = True) -> dict[str, bytes]:
    """The archive's members; ``urls``: with IMDB's URL lists (review id -> its movie)."""
    rng = random.Random(seed)
    members: dict[str, bytes] = {
        "aclImdb/README": b"Tiny test dataset in the layout of the Large Movie Review Dataset.\n",
        "aclImdb/imdb.vocab": b"the\nfilm\n",
    }
    plan = [("train", "pos", per_class_train), ("train", "neg", per_class_train),
            ("test", "pos", per_class_test), ("test", "neg", per_class_test),
            ("train", "unsup", unlabeled)]
    for split, polarity, count in plan:
        for i in range(count):
            name = f"aclImdb/{split}/{polarity}/{i}_{rating(rng, polarity)}.txt"
            members[name] = review(rng, polarity).encode("utf-8")
        if urls:
            members[f"aclImdb/{split}/urls_{polarity}.txt"] = "".join(
                movie_url(i) + "\n" for i in range(count)).encode()
    return members


def write_archive(path: Path, members: dict[str, bytes], extra: list[tarfile.TarInfo] = ()
                  ) -> Path:
    """Write ``members`` (name -> bytes) as a .tar.gz, plus any raw TarInfo entries."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def build_archive(path: Path, **kwargs: int) -> Path:
    return write_archive(path, build_members(**kwargs))
