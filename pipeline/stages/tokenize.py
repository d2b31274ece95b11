"""Stage 3 — tokenize: spaCy's English tokenizer over every split, as Parquet token lists."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.artifacts import SPLITS
from pipeline.config import load_params
from pipeline.errors import run_stage
from pipeline.io import atomic_path, read_input, require
from pipeline.text import TOKEN_LISTS, TokenizerPool
from pipeline.timing import usable_cores

SCHEMA = pa.schema([("id", pa.string()), ("tokens", TOKEN_LISTS)])
# Each worker holds spaCy and its chunk cache, ~350 MB on the full IMDB data (8 workers:
# 3.6 GB in all with the parent, summed RSS, measured), so `workers: 0` stops at 8 to stay
# under the 4 GiB budget.
MAX_AUTO_WORKERS = 8


def worker_count(requested: int) -> int:
    """`tokenize.workers`, with 0 meaning one per core this process may run on (at most 8)."""
    return requested or min(usable_cores(), MAX_AUTO_WORKERS)


def tokenize_split(source: Path, target: Path, pool: TokenizerPool) -> int:
    frame = read_input(source, "prepared table",
                       lambda path: pd.read_parquet(path, columns=["id", "text"]))
    ids, texts = frame["id"].tolist(), frame["text"].tolist()
    del frame
    done = 0
    with pq.ParquetWriter(target, SCHEMA) as writer, \
            tqdm(total=len(texts), desc=f"tokenize {source.stem}", unit="doc") as bar:
        # written batch by batch: the full corpus of token strings is never held at once
        # (the workers send Arrow arrays: the parent only writes them)
        for batch in pool.arrow_batches(texts):
            writer.write_table(pa.table({"id": ids[done:done + len(batch)], "tokens": batch},
                                        schema=SCHEMA))
            done += len(batch)
            bar.update(len(batch))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", default="data/tokens")
    args = parser.parse_args()
    params = load_params(args.params)
    prepared = Path(args.prepared)
    sources = {s: require(prepared / f"{s}.parquet", f"prepared {s} table") for s in SPLITS}
    settings = params.tokenize
    with atomic_path(args.out) as staging, TokenizerPool(
            settings.lowercase, worker_count(settings.workers), settings.batch_size) as pool:
        staging.mkdir()
        for split, source in sources.items():  # one pool for all: workers' caches carry over
            tokenize_split(source, staging / f"{split}.parquet", pool)


if __name__ == "__main__":
    run_stage("tokenize", main)
