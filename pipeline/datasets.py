"""Dataset registry: where each dataset comes from, how to check it, how to read it.

A dataset is a few source files (URL + public checksum), a ``verify`` step run by
the fetch stage, and a ``read`` step run by the prepare stage that turns the raw
files into tables with ``id``, ``text``, ``label`` (int) and ``rating`` columns.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class SourceFile:
    name: str  # file name under data/raw/
    url: str
    known_hash: str  # "md5:…" or "sha256:…", as pooch expects


@dataclass(frozen=True)
class RawSplits:
    train: pd.DataFrame
    test: pd.DataFrame
    unlabeled: pd.DataFrame
    valid: pd.DataFrame | None = None  # when the dataset ships its own dev split


@dataclass(frozen=True)
class Dataset:
    name: str
    label_names: tuple[str, ...]
    files: tuple[SourceFile, ...]
    verify: Callable[[Path, bool], dict[str, int]]  # (raw dir, expect full size) -> counts
    read: Callable[[Path], RawSplits]
    description: str = ""
    full_counts: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- IMDB (Maas et al., 2011)

IMDB_ARCHIVE = "aclImdb_v1.tar.gz"
IMDB_MEMBER = re.compile(r"^aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")
IMDB_FULL_COUNTS = {
    "train/pos": 12500,
    "train/neg": 12500,
    "test/pos": 12500,
    "test/neg": 12500,
    "train/unsup": 50000,
}


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:gz")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise PipelineError(f"{path} is not a readable .tar.gz archive ({exc})") from exc


def _safe_members(path: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """Yield the archive's members after the ``data`` extraction filter approved them.

    Links of any kind, absolute paths and ``..`` are refused outright: a dataset
    archive has no reason to contain them.
    """
    with _open_tar(path) as tar:
        try:
            for member in tar:
                if member.issym() or member.islnk():
                    raise PipelineError(
                        f"{path}: refusing link member {member.name!r} -> {member.linkname!r}"
                    )
                try:
                    if member.name.startswith(("/", "\\")):  # the filter would only strip it
                        raise tarfile.AbsolutePathError(member)
                    tarfile.data_filter(member, "/nonexistent-extraction-root")
                except tarfile.FilterError as exc:
                    raise PipelineError(
                        f"{path}: refusing unsafe member {member.name!r}: {exc}") from None
                yield tar, member
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise PipelineError(
                f"{path} is corrupted or truncated ({type(exc).__name__}: {exc})"
            ) from exc


def verify_imdb(raw_dir: Path, expect_full_size: bool) -> dict[str, int]:
    archive = raw_dir / IMDB_ARCHIVE
    counts: Counter[str] = Counter()
    for _, member in _safe_members(archive):
        match = IMDB_MEMBER.match(member.name)
        if match and member.isfile():
            counts[f"{match[1]}/{match[2]}"] += 1
    found = {key: counts.get(key, 0) for key in IMDB_FULL_COUNTS}
    missing = [key for key in ("train/pos", "train/neg", "test/pos", "test/neg") if not found[key]]
    if missing:
        raise PipelineError(
            f"{archive} does not have the IMDB layout: no reviews under "
            + ", ".join(f"aclImdb/{key}/" for key in missing)
        )
    if expect_full_size and found != IMDB_FULL_COUNTS:
        diff = ", ".join(
            f"{key}: {found[key]} (expected {IMDB_FULL_COUNTS[key]})"
            for key in IMDB_FULL_COUNTS
            if found[key] != IMDB_FULL_COUNTS[key]
        )
        raise PipelineError(f"{archive} is incomplete: {diff}")
    return found


def read_imdb(raw_dir: Path) -> RawSplits:
    rows: dict[str, list[dict]] = {"train": [], "test": [], "unsup": []}
    archive = raw_dir / IMDB_ARCHIVE
    for tar, member in _safe_members(archive):
        match = IMDB_MEMBER.match(member.name)
        if not (match and member.isfile()):
            continue
        split, polarity, review_id, rating = match[1], match[2], match[3], int(match[4])
        handle = tar.extractfile(member)
        assert handle is not None  # regular file
        data = handle.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PipelineError(
                f"{archive}: member {member.name} is not UTF-8 text (byte {exc.start})"
            ) from None
        key = "unsup" if polarity == "unsup" else split
        row = {"id": f"{split}/{polarity}/{review_id}", "text": text, "rating": rating}
        if polarity != "unsup":
            row["label"] = 1 if polarity == "pos" else 0
        rows[key].append(row)

    def table(key: str, labeled: bool) -> pd.DataFrame:
        columns = ["id", "text", "label", "rating"] if labeled else ["id", "text", "rating"]
        frame = pd.DataFrame(rows[key], columns=columns)
        # tar order is arbitrary: sort so the same archive always gives the same tables
        return frame.sort_values("id", kind="stable", ignore_index=True)

    return RawSplits(train=table("train", True), test=table("test", True),
                     unlabeled=table("unsup", False))


IMDB = Dataset(
    name="imdb",
    label_names=("neg", "pos"),
    files=(
        SourceFile(
            name=IMDB_ARCHIVE,
            url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
            known_hash="md5:7c2ac02c03563afcf9b574c7e56c153a",
        ),
    ),
    verify=verify_imdb,
    read=read_imdb,
    description="Large Movie Review Dataset v1.0: 25k train, 25k test, 50k unlabeled reviews",
    full_counts=IMDB_FULL_COUNTS,
)

REGISTRY: dict[str, Dataset] = {IMDB.name: IMDB}


def get_dataset(name: str) -> Dataset:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise PipelineError(f"unknown dataset {name!r} in data.dataset; known: {known}") from None
