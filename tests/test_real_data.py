"""fetch + prepare on the real IMDB mirror, when this machine has it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.datasets import IMDB_ID_BLOCK
from tests.conftest import REPO, SHARED_DATA, stage

MIRROR = SHARED_DATA / "aclImdb_v1.tar.gz"


def id_blocks(frame: pd.DataFrame) -> set[tuple[str, int]]:
    """(polarity, review id // IMDB_ID_BLOCK) of each review ("train/pos/123")."""
    return {(polarity, int(number) // IMDB_ID_BLOCK)
            for _, polarity, number in frame["id"].str.split("/")}


@pytest.mark.skipif(not MIRROR.exists(), reason=f"no IMDB mirror at {MIRROR}")
def test_fetch_and_prepare_real_imdb(tmp_path: Path, pipeline_env: dict) -> None:
    params = (REPO / "params.yaml").read_text().replace(
        "../shared/data/aclImdb_v1.tar.gz", str(MIRROR))
    (tmp_path / "params.yaml").write_text(params)
    stage("fetch", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env)
    source = json.loads((tmp_path / "data/raw/source.json").read_text())
    assert source["counts"] == {"train/pos": 12500, "train/neg": 12500, "test/pos": 12500,
                                "test/neg": 12500, "train/unsup": 50000}
    stage("prepare", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env)
    info = json.loads((tmp_path / "data/prepared/info.json").read_text())
    assert info["counts"] == {"train": 22500, "valid": 2500, "test": 25000, "unlabeled": 50000}
    test = pd.read_parquet(tmp_path / "data/prepared/test.parquet")
    assert test["label"].value_counts().to_dict() == {0: 12500, 1: 12500}
    assert not test["text"].str.contains("<br", regex=False).any()
    # the mirror has no URL lists: whole blocks of 50 review ids are held out, balanced
    assert info["valid_holdout"].startswith("whole groups: blocks of 50")
    train, valid = (pd.read_parquet(tmp_path / f"data/prepared/{s}.parquet")
                    for s in ("train", "valid"))
    assert valid["label"].value_counts().to_dict() == {0: 1250, 1: 1250}
    assert not id_blocks(train) & id_blocks(valid)
