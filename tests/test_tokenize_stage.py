"""The tokenize stage's worker count: `tokenize.workers: 0` means one per core (at most 8),
and the Parquet it writes is the same whatever the count."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.config import TokenizeParams
from pipeline.stages.tokenize import MAX_AUTO_WORKERS, tokenize_split, worker_count
from pipeline.text import TokenizerPool


def test_zero_workers_means_one_per_available_core_at_most_eight(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cores = len(os.sched_getaffinity(0))
    assert worker_count(0) == min(cores, MAX_AUTO_WORKERS) >= 1
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)))
    assert worker_count(0) == MAX_AUTO_WORKERS
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {5})
    assert worker_count(0) == 1
    assert worker_count(3) == 3  # an explicit count is kept, even above the core count
    assert TokenizeParams().workers == 0
    with pytest.raises(ValueError, match="workers"):
        TokenizeParams(workers=-1)


def test_split_is_written_identically_with_one_and_automatic_workers(tmp_path: Path) -> None:
    texts = [f"Review {i}: it wasn't {'great' if i % 2 else 'bad'}... was it?! (:"
             for i in range(60)]
    source = tmp_path / "train.parquet"
    pd.DataFrame({"id": [f"r{i}" for i in range(60)], "text": texts}).to_parquet(source)
    written = {}
    for workers in (1, 0):
        target = tmp_path / f"tokens-{workers}.parquet"
        with TokenizerPool(workers=worker_count(workers), batch_size=7) as pool:
            assert tokenize_split(source, target, pool) == 60
        written[workers] = pq.read_table(target)
    assert written[0].equals(written[1])
    assert written[1].column("tokens")[1].as_py() == [
        "review", "1", ":", "it", "was", "n't", "great", "...", "was", "it", "?", "!", "(:"]
