"""The validation hold-out: whole movies (IMDB), so that valid accuracy estimates test's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.datasets import IMDB_ID_BLOCK, read_imdb
from pipeline.errors import PipelineError
from pipeline.stages.prepare import split_valid
from tests.conftest import stage, tiny_params
from tests.tiny_imdb import build_members, movie_url, write_archive


def raw_dir(tmp_path: Path, members: dict[str, bytes]) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_archive(raw / "aclImdb_v1.tar.gz", members)
    return raw


def movie_of(review_id: str) -> str:
    """The movie of a train review id ("train/pos/7"), from the tiny archive's URL lists."""
    return re.search(r"tt\d+", movie_url(int(review_id.split("/")[2])))[0]


def test_movies_come_from_the_url_lists(tmp_path: Path) -> None:
    splits = read_imdb(raw_dir(tmp_path, build_members(6, 2, 2)))
    train = splits.train.set_index("id")
    assert train.loc["train/pos/3", "group"] == "tt1000001"
    assert train.loc["train/neg/3", "group"] == "tt1000001"  # a movie has both polarities
    assert (train["group"] == [movie_of(i) for i in train.index]).all()
    assert "URL lists" in splits.grouping
    assert "group" not in splits.test and "group" not in splits.unlabeled


def test_without_url_lists_reviews_are_grouped_by_blocks_of_ids(tmp_path: Path) -> None:
    members = build_members(6, 2, 2, urls=False)
    members["aclImdb/train/pos/120_8.txt"] = b"A later review, of another movie."
    train = read_imdb(raw_dir(tmp_path, members)).train.set_index("id")
    assert train.loc["train/pos/5", "group"] == "pos:0"
    assert train.loc["train/pos/120", "group"] == f"pos:{120 // IMDB_ID_BLOCK}"
    assert train.loc["train/neg/5", "group"] == "neg:0"


def test_a_url_list_too_short_for_the_reviews_is_an_error(tmp_path: Path) -> None:
    members = build_members(6, 2, 2)
    members["aclImdb/train/urls_neg.txt"] = movie_url(0).encode() + b"\n"
    with pytest.raises(PipelineError, match=r"urls_neg.txt has 1 line\(s\), but review 1 "
                                            r"needs line 2"):
        read_imdb(raw_dir(tmp_path, members))


def grouped_frame(movies: int, per_movie: int = 4) -> pd.DataFrame:
    """``movies`` movies, each with ``per_movie`` reviews, half of them positive."""
    rows = [{"id": f"m{m}-r{r}", "text": "x", "label": r % 2, "group": f"m{m}"}
            for m in range(movies) for r in range(per_movie)]
    return pd.DataFrame(rows)


def test_grouped_split_holds_out_whole_movies_stratified() -> None:
    frame = grouped_frame(200)
    kept, valid = split_valid(frame, 0.1, seed=13, groups=frame["group"])
    assert not set(kept["group"]) & set(valid["group"])
    assert len(kept) + len(valid) == len(frame) and len(valid) == 80  # 20 of 200 movies
    assert valid["label"].value_counts().to_dict() == {0: 40, 1: 40}
    position = {review: i for i, review in enumerate(frame["id"])}
    for side in (kept, valid):  # each side keeps the input's order
        assert side["id"].map(position).is_monotonic_increasing
    again = split_valid(frame, 0.1, seed=13, groups=frame["group"])[1]
    assert again["id"].tolist() == valid["id"].tolist()
    assert (split_valid(frame, 0.1, seed=14, groups=frame["group"])[1]["id"].tolist()
            != valid["id"].tolist())


def test_too_few_movies_for_a_grouped_split() -> None:
    frame = grouped_frame(4, per_movie=10)
    with pytest.raises(PipelineError, match=r"whole groups \(movies\) for validation: the train "
                                            r"split has 4 group\(s\), "
                                            r"prepare.valid_fraction=0.1 needs at least 10.*"
                                            r"prepare.valid_split: random"):
        split_valid(frame, 0.1, seed=0, groups=frame["group"], grouping="movies")


@pytest.mark.filterwarnings("ignore:The least populated class")
def test_a_grouped_split_that_loses_a_class_is_an_error() -> None:
    # every review of class 1 belongs to one movie: whichever side gets it, the other lacks it
    frame = grouped_frame(10, per_movie=2).assign(label=0)
    frame.loc[frame["group"] == "m0", "label"] = 1
    with pytest.raises(PipelineError, match=r"without label\(s\) \[1\]"):
        split_valid(frame, 0.1, seed=0, groups=frame["group"])


@pytest.mark.parametrize("valid_split", ["grouped", "random"])
def test_prepare_stage_valid_split(tmp_path: Path, tiny_archive: Path, pipeline_env: dict,
                                   valid_split: str) -> None:
    params = tiny_params(tiny_archive, prepare={"valid_split": valid_split})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage("fetch", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env)
    result = stage("prepare", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env)
    tables = {s: pd.read_parquet(tmp_path / f"data/prepared/{s}.parquet")
              for s in ("train", "valid")}
    info = json.loads((tmp_path / "data/prepared/info.json").read_text())
    for table in tables.values():  # the groups serve the hold-out only
        assert list(table.columns) == ["id", "text", "label", "rating"]
    shared = ({movie_of(i) for i in tables["train"]["id"]}
              & {movie_of(i) for i in tables["valid"]["id"]})
    if valid_split == "grouped":
        assert not shared
        assert info["valid_holdout"].startswith("whole groups: movies")
    else:
        assert shared  # 10 movies, 4 reviews each: a random hold-out splits some
        assert info["valid_holdout"] == "random reviews (stratified)"
    assert info["valid_holdout"] in result.stdout


def test_own_files_hold_out_whole_groups(tmp_path: Path, tiny_archive: Path,
                                         pipeline_env: dict) -> None:
    """data.files.group_column: rows sharing a value (here an author) stay on one side."""
    rows = [{"text": f"{kind} review {i} by author {i // 3}", "label": kind, "author": i // 3}
            for kind in ("good", "bad") for i in range(30)]
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(rows[::10]).to_csv(tmp_path / "test.csv", index=False)
    files = {"train": "train.csv", "test": "test.csv", "group_column": "author"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(
        tiny_archive, data={"dataset": "files", "files": files})))
    stage("fetch", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env)
    stage("prepare", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env)
    info = json.loads((tmp_path / "data/prepared/info.json").read_text())
    assert info["valid_holdout"] == "whole groups: column 'author' (data.files.group_column)"
    tables = {s: pd.read_parquet(tmp_path / f"data/prepared/{s}.parquet")
              for s in ("train", "valid")}
    author = dict(zip((f"train/{i}" for i in range(1, 61)), (r["author"] for r in rows),
                      strict=True))
    authors = {s: {author[i] for i in t["id"]} for s, t in tables.items()}
    assert not authors["train"] & authors["valid"]
    assert sorted(tables["valid"]["label"].unique()) == [0, 1]
    assert list(tables["train"].columns) == ["id", "text", "label"]


def test_own_files_group_column_errors(tmp_path: Path, tiny_archive: Path,
                                       pipeline_env: dict) -> None:
    rows = [{"text": "fine", "label": "good", "author": "a"},
            {"text": "poor", "label": "bad", "author": ""}]
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(rows).to_csv(tmp_path / "test.csv", index=False)
    for group_column, message in (("author", "train.csv: data row 2 has no value in column "
                                              "'author' (data.files.group_column)"),
                                  ("writer", "train.csv has no column 'writer' "
                                             "(data.files.group_column)"),
                                  ("label", "group_column 'label' is also the text or label "
                                            "column")):
        files = {"train": "train.csv", "test": "test.csv", "group_column": group_column}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(
            tiny_archive, data={"dataset": "files", "files": files})))
        result = stage("fetch", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env,
                       check=False)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "data" / "raw").exists()
