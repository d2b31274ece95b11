"""Stage 2 — prepare: raw files -> clean Parquet tables train / valid / test / unlabeled."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from pipeline.config import PrepareParams, load_params
from pipeline.datasets import get_dataset
from pipeline.errors import PipelineError, run_stage
from pipeline.io import atomic_path, require, write_json
from pipeline.sampling import stratified_rows
from pipeline.text import clean_text


def clean(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    """Clean the text column; drop reviews left empty, saying which."""
    frame = frame.assign(text=frame["text"].map(clean_text))
    empty = frame["text"].str.len() == 0
    if empty.any():
        ids = frame.loc[empty, "id"].tolist()
        shown = ", ".join(map(str, ids[:5])) + (" …" if len(ids) > 5 else "")
        print(f"[prepare] warning: dropped {len(ids)} empty {split} review(s): {shown}")
        frame = frame.loc[~empty].reset_index(drop=True)
    return frame


def stratified_sample(frame: pd.DataFrame, n: int | None, seed: int, key: str
                      ) -> pd.DataFrame:
    """At most ``n`` rows, every class kept (``key`` names the setting in errors)."""
    if n is None or n >= len(frame):
        return frame
    sample = frame.iloc[stratified_rows(frame["label"].to_numpy(), n, seed, key)]
    return sample.sort_index().reset_index(drop=True)


def split_valid(train: pd.DataFrame, fraction: float, seed: int,
                groups: pd.Series | None = None, grouping: str = "groups"
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a stratified ``fraction`` of train for validation. With ``groups`` (one per
    row, e.g. IMDB's movies; ``grouping`` says what they are) whole groups go to one side:
    StratifiedGroupKFold's first of round(1 / fraction) folds. IMDB's test set holds other
    movies than its train set, and a validation set that shares train's movies overstates
    accuracy (README: Validation split)."""
    counts = train["label"].value_counts()
    if len(train) * fraction < counts.size or counts.min() < 2:
        raise PipelineError(
            f"cannot hold out a stratified validation set: {len(train)} training reviews, "
            f"class counts {counts.to_dict()}, prepare.valid_fraction={fraction}"
        )
    if groups is None:
        kept, valid = train_test_split(train, test_size=fraction, random_state=seed,
                                       stratify=train["label"])
        return kept.sort_index().reset_index(drop=True), valid.sort_index().reset_index(drop=True)
    folds = max(2, round(1 / fraction))
    advice = "use more data, a larger prepare.valid_fraction, or prepare.valid_split: random"
    if groups.nunique() < folds:
        raise PipelineError(
            f"cannot hold out whole groups ({grouping}) for validation: the train split has "
            f"{groups.nunique()} group(s), prepare.valid_fraction={fraction} needs at least "
            f"{folds}; " + advice)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    kept_rows, valid_rows = next(splitter.split(train, train["label"], groups.to_numpy()))
    kept, valid = train.iloc[kept_rows], train.iloc[valid_rows]
    for side, frame in (("validation", valid), ("training", kept)):
        missing = set(counts.index) - set(frame["label"])
        if missing:
            raise PipelineError(
                f"holding out whole groups ({grouping}) left the {side} split without label(s) "
                f"{sorted(missing)}; " + advice)
    return kept.reset_index(drop=True), valid.reset_index(drop=True)


def prepare(raw_dir: Path, dataset_name: str, params: PrepareParams, out_dir: Path) -> dict:
    dataset = get_dataset(dataset_name)
    require(raw_dir / "source.json", "fetched data")
    raw = dataset.read(raw_dir)
    train = clean(raw.train, "train")
    groups = train.pop("group") if "group" in train.columns else None  # for the hold-out only
    if train.empty:  # before the valid hold-out, whose own error would hide the cause
        raise PipelineError("no train reviews left after cleaning")
    if raw.valid is not None:
        valid = clean(raw.valid, "valid")
        holdout = "the dataset's own validation split"
    else:
        if params.valid_split == "random":
            groups = None
        train, valid = split_valid(train, params.valid_fraction, params.seed, groups,
                                   raw.grouping or "groups")
        holdout = (f"whole groups: {raw.grouping}" if groups is not None
                   else "random reviews (stratified)")
        print(f"[prepare] validation split: {len(valid)} reviews held out, {holdout}")
    tables = {
        "train": stratified_sample(train, params.max_train, params.seed, "prepare.max_train"),
        "valid": valid,
        "test": stratified_sample(clean(raw.test, "test"), params.max_test, params.seed,
                                  "prepare.max_test"),
        "unlabeled": clean(raw.unlabeled, "unlabeled"),
    }
    if params.max_unlabeled is not None and params.max_unlabeled < len(tables["unlabeled"]):
        tables["unlabeled"] = (tables["unlabeled"]
                               .sample(n=params.max_unlabeled, random_state=params.seed)
                               .sort_index().reset_index(drop=True))
    for split in ("valid", "test"):  # train was checked above; sampling keeps every class
        if tables[split].empty:
            raise PipelineError(f"no {split} reviews left after cleaning")
    classes = tables["train"]["label"].nunique()
    if classes < 2:  # a one-class "classifier" would score 100% and be registered
        raise PipelineError(
            f"the train split has {classes} class (label {tables['train']['label'].iloc[0]}); "
            f"a classifier needs at least two")
    unknown = set(tables["test"]["label"]) - set(tables["train"]["label"])
    if unknown:
        raise PipelineError(f"test labels {sorted(unknown)} never occur in train")

    info = {
        "dataset": dataset.name,
        "label_names": list(raw.label_names or dataset.label_names),
        "counts": {split: len(frame) for split, frame in tables.items()},
        "valid_holdout": holdout,
        "capped": {"max_train": params.max_train, "max_unlabeled": params.max_unlabeled,
                   "max_test": params.max_test},
    }
    with atomic_path(out_dir) as staging:
        staging.mkdir()
        for split, frame in tables.items():
            frame.to_parquet(staging / f"{split}.parquet", index=False)
        write_json(staging / "info.json", info)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--out", default="data/prepared")
    args = parser.parse_args()
    params = load_params(args.params)
    info = prepare(Path(args.raw), params.data.dataset, params.prepare, Path(args.out))
    print("[prepare] " + ", ".join(f"{k}={v}" for k, v in info["counts"].items()))


if __name__ == "__main__":
    run_stage("prepare", main)
