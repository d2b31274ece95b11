"""prepare -> tokenize -> vocab on the tiny archive, as stage processes."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.stages.prepare import split_valid, stratified_sample
from pipeline.stages.vocab import count_tokens, encode_split
from pipeline.text import UNK_ID, Vocab
from tests.conftest import stage, tiny_params
from tests.tiny_imdb import build_members, write_archive


def run_until_vocab(root: Path, params: dict, env: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for module in ("fetch", "prepare", "tokenize", "vocab"):
        stage(module, "--params", "params.yaml", cwd=root, env=env)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, tiny_archive: Path) -> Path:

    root = tmp_path_factory.mktemp("prep")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db"}
    run_until_vocab(root, tiny_params(tiny_archive, prepare={"max_unlabeled": 25}), env)
    return root


def test_splits_are_clean_stratified_and_disjoint(prepared: Path) -> None:
    tables = {s: pd.read_parquet(prepared / f"data/prepared/{s}.parquet")
              for s in ("train", "valid", "test", "unlabeled")}
    assert {s: len(t) for s, t in tables.items()} == {"train": 32, "valid": 8, "test": 20,
                                                       "unlabeled": 25}
    assert tables["valid"]["label"].value_counts().to_dict() == {0: 4, 1: 4}
    assert not set(tables["train"]["id"]) & set(tables["valid"]["id"])
    for table in tables.values():
        assert not table["text"].str.contains("<br", regex=False).any()
        assert (table["text"].str.len() > 0).all()
    assert list(tables["unlabeled"].columns) == ["id", "text", "rating"]


def test_vocab_never_sees_valid_or_test_text(prepared: Path) -> None:
    itos = json.loads((prepared / "data/vocab/vocab.json").read_text())["itos"]
    seen = set()
    for split in ("train", "unlabeled"):
        for tokens in pd.read_parquet(prepared / f"data/tokens/{split}.parquet")["tokens"]:
            seen.update(tokens)
    assert set(itos[3:]) <= seen


def test_id_arrays_round_trip(prepared: Path) -> None:
    vocab_dir = prepared / "data/vocab"
    itos = json.loads((vocab_dir / "vocab.json").read_text())["itos"]
    ids = np.load(vocab_dir / "train_ids.npy", mmap_mode="r")
    offsets = np.load(vocab_dir / "train_offsets.npy")
    tokens = pd.read_parquet(prepared / "data/tokens/train.parquet")["tokens"]
    assert len(offsets) == len(tokens) + 1
    first = [itos[i] for i in ids[offsets[0]:offsets[1]]]
    assert first == list(tokens[0])
    labels = np.load(vocab_dir / "train_labels.npy")
    assert labels.dtype == np.int64 and len(labels) == len(tokens)


def test_arrow_counting_and_encoding_match_python(tmp_path: Path) -> None:
    """The stage counts and encodes in Arrow; the result must be Counter's counts and
    Vocab.encode's ids: specials, accents, emoji, empty documents, unknown words."""
    rng = random.Random(3)
    words = ["the", "film", "café", "cafe\u0301", "😀", "<unk>", "<pad>", "n't", "", " "]
    docs = [[rng.choice(words) for _ in range(rng.randrange(0, 12))] for _ in range(300)]
    schema = pa.schema([("id", pa.string()), ("tokens", pa.list_(pa.string()))])
    source = tmp_path / "train.parquet"
    pq.write_table(pa.table({"id": [str(i) for i in range(300)], "tokens": docs},
                            schema=schema), source, row_group_size=64)  # several chunks
    counts = count_tokens([source])
    assert counts == Counter(token for doc in docs for token in doc)
    vocab = Vocab.build(counts, min_freq=1, max_size=8)  # some words stay unknown
    stats = encode_split(source, vocab, tmp_path, "train")
    ids, offsets = np.load(tmp_path / "train_ids.npy"), np.load(tmp_path / "train_offsets.npy")
    assert ids.dtype == np.int32 and offsets.dtype == np.int64
    assert [list(ids[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)] == [
        list(vocab.encode(doc)) for doc in docs]
    assert stats["documents"] == 300 and stats["tokens"] == len(ids)
    assert stats["unk_rate"] == pytest.approx(float(np.mean(ids == UNK_ID)))


def test_test_only_words_are_unknown(tmp_path: Path, pipeline_env: dict) -> None:
    members = build_members(6, 3, 4)
    members["aclImdb/test/pos/0_10.txt"] = b"Zyzzyva quixotic masterpiece."
    archive = write_archive(tmp_path / "aclImdb_v1.tar.gz", members)
    run_until_vocab(tmp_path, tiny_params(archive, prepare={"valid_fraction": 0.3}), pipeline_env)
    itos = json.loads((tmp_path / "data/vocab/vocab.json").read_text())["itos"]
    assert "zyzzyva" not in itos and "quixotic" not in itos


def test_empty_reviews_are_dropped_with_a_warning(tmp_path: Path, pipeline_env: dict) -> None:
    members = build_members(6, 3, 4)
    members["aclImdb/train/pos/0_9.txt"] = b"  <br /><br />  "
    members["aclImdb/train/neg/0_1.txt"] = b""
    archive = write_archive(tmp_path / "aclImdb_v1.tar.gz", members)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        tiny_params(archive, prepare={"valid_fraction": 0.3})))
    stage("fetch", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env)
    result = stage("prepare", "--params", "params.yaml", cwd=tmp_path, env=pipeline_env)
    assert "dropped 2 empty train review(s): train/neg/0, train/pos/0" in result.stdout


def test_a_vocabulary_of_mostly_unknown_words_is_warned_about(prepared: Path, tmp_path: Path
                                                               ) -> None:
    """vocab.min_freq far too high for the text: the stage works, but says so."""
    params = yaml.safe_load((prepared / "params.yaml").read_text())
    params["vocab"]["min_freq"] = 60
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = stage("vocab", "--params", "params.yaml", "--prepared",
                   str(prepared / "data/prepared"), "--tokens", str(prepared / "data/tokens"),
                   "--out", "vocab", cwd=tmp_path,
                   env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    info = json.loads((tmp_path / "vocab" / "info.json").read_text())
    assert info["splits"]["train"]["unk_rate"] > 0.5
    assert (f"[vocab] warning: {info['splits']['train']['unk_rate']:.0%} of the train tokens are "
            f"outside the vocabulary ({info['vocab_size']} types)") in result.stderr
    normal = json.loads((prepared / "data/vocab/info.json").read_text())
    assert normal["splits"]["train"]["unk_rate"] < 0.5  # the default: no warning there


def test_a_capped_train_split_keeps_a_class_with_one_review() -> None:
    """prepare.max_train below the train size: a class with a single review (too rare to
    stratify) used to vanish from the random sample; then prepare blamed the test labels."""
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(41)],
                          "label": [0] * 20 + [1] * 20 + [2]})
    for seed in range(20):
        sample = stratified_sample(frame, 6, seed, "prepare.max_train")
        assert len(sample) == 6 and sorted(sample["label"].unique()) == [0, 1, 2]
        assert sample["text"].is_unique


def test_too_small_for_a_stratified_valid_split() -> None:
    frame = pd.DataFrame({"id": ["a", "b", "c"], "text": ["x"] * 3, "label": [0, 0, 1]})
    with pytest.raises(PipelineError, match="cannot hold out a stratified validation set"):
        split_valid(frame, 0.3, seed=0)
