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
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.artifacts import SPLITS, VOCAB_INFO_KEYS
from pipeline.config import VocabParams, load_params
from pipeline.errors import PipelineError, run_stage
from pipeline.io import atomic_path, read_input, read_json, require, write_json
from pipeline.text import UNK_ID, Vocab

UNKNOWN_WARNING = 0.5  # share of <unk> train tokens that is surely a mistake
VOCAB_SOURCES = ("train", "unlabeled")  # test and valid text must never shape the vocabulary


def token_lists(path: Path) -> pa.ListArray:
    """A tokenized split's ``tokens`` column: one list of strings per document."""
    table = read_input(path, "tokenized split", lambda p: pq.read_table(p, columns=["tokens"]))
    column = table.column("tokens")
    return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)


def count_tokens(paths: list[Path]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in paths:
        # counted by Arrow in C++: a Python loop over 20 M tokens took most of the stage
        tallies = pc.value_counts(pc.list_flatten(token_lists(path)))
        counts.update(dict(zip(tallies.field("values").to_pylist(),
                               tallies.field("counts").to_pylist(), strict=True)))
    return counts


def encode_split(tokens_path: Path, vocab: Vocab, out_dir: Path, split: str) -> dict:
    docs = token_lists(tokens_path)
    # each token's index in the vocabulary (Vocab.encode's mapping), <unk> where it has none
    found = pc.index_in(pc.list_flatten(docs), value_set=pa.array(vocab.itos, pa.string()))
    ids = pc.fill_null(found, UNK_ID).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    lengths = pc.list_value_length(docs).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    np.save(out_dir / f"{split}_ids.npy", ids)
    np.save(out_dir / f"{split}_offsets.npy", offsets)
    return {"documents": len(docs), "tokens": int(ids.size),
            "unk_rate": float((ids == UNK_ID).mean()) if ids.size else 0.0}


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
        summary = {"vocab_size": len(vocab), "vocab_sha256": vocab.sha256, "splits": stats,
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
