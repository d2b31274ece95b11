"""Stage 4 — vocab: build the vocabulary from train + unlabeled text (never valid or test),
then write every split as memory-mappable NumPy id arrays.

Per split: ``<split>_ids.npy`` (all token ids, documents back to back, int32),
``<split>_offsets.npy`` (int64, document i is ids[offsets[i]:offsets[i+1]]) and,
for labeled splits, ``<split>_labels.npy``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline.artifacts import SPLITS, VOCAB_INFO_KEYS
from pipeline.config import VocabParams, load_params
from pipeline.errors import PipelineError, run_stage
from pipeline.io import atomic_path, read_input, read_json, require, write_json
from pipeline.text import Vocab

UNKNOWN_WARNING = 0.5  # share of <unk> train tokens that is surely a mistake
VOCAB_SOURCES = ("train", "unlabeled")  # test and valid text must never shape the vocabulary


def token_batches(path: Path) -> Iterator[list[list[str]]]:
    parquet = read_input(path, "tokenized split", pq.ParquetFile)  # reads the footer
    for batch in parquet.iter_batches(batch_size=2000, columns=["tokens"]):
        yield batch.column(0).to_pylist()


def count_tokens(paths: list[Path]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in paths:
        for docs in token_batches(path):
            for tokens in docs:
                counts.update(tokens)
    return counts


def encode_split(tokens_path: Path, vocab: Vocab, out_dir: Path, split: str) -> dict:
    pieces, lengths = [], []
    for docs in token_batches(tokens_path):
        for tokens in docs:
            pieces.append(vocab.encode(tokens))
            lengths.append(len(tokens))
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    np.save(out_dir / f"{split}_ids.npy", ids)
    np.save(out_dir / f"{split}_offsets.npy", offsets)
    return {"documents": len(lengths), "tokens": int(ids.size),
            "unk_rate": float((ids == 1).mean()) if ids.size else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--tokens", default="data/tokens")
    parser.add_argument("--out", default="data/vocab")
    args = parser.parse_args()
    params: VocabParams = load_params(args.params).vocab
    tokens_dir, prepared = Path(args.tokens), Path(args.prepared)
    paths = {s: require(tokens_dir / f"{s}.parquet", f"{s} tokens") for s in SPLITS}
    info = read_json(require(prepared / "info.json", "prepared data"),
                     ("label_names", "dataset"))

    vocab = Vocab.build(count_tokens([paths[s] for s in VOCAB_SOURCES]),
                        params.min_freq, params.max_size)
    if len(vocab) <= 3:
        raise PipelineError(
            f"vocabulary is empty: no token occurs vocab.min_freq={params.min_freq} times "
            "in the train and unlabeled text"
        )
    stats = {}
    with atomic_path(args.out) as staging:
        staging.mkdir()
        for split in SPLITS:
            stats[split] = encode_split(paths[split], vocab, staging, split)
            if split != "unlabeled":
                labels = read_input(prepared / f"{split}.parquet", "prepared table",
                                    lambda path: pd.read_parquet(path, columns=["label"]))
                np.save(staging / f"{split}_labels.npy",
                        labels["label"].to_numpy(dtype=np.int64))
        write_json(staging / "vocab.json", {"itos": list(vocab.itos)})
        summary = {"vocab_size": len(vocab), "splits": stats,
                   "label_names": info["label_names"], "dataset": info["dataset"]}
        assert set(summary) == set(VOCAB_INFO_KEYS)
        write_json(staging / "info.json", summary)
    print(f"[vocab] {len(vocab)} types; "
          + ", ".join(f"{s}: {v['tokens']} tokens" for s, v in stats.items()))
    unknown = stats["train"]["unk_rate"]
    if unknown > UNKNOWN_WARNING:  # e.g. a min_freq far too high for this much text
        print(f"[vocab] warning: {unknown:.0%} of the train tokens are outside the "
              f"vocabulary ({len(vocab)} types): the models will see mostly <unk>; lower "
              "vocab.min_freq or raise vocab.max_size", file=sys.stderr)


if __name__ == "__main__":
    run_stage("vocab", main)
