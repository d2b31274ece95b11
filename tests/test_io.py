"""pipeline.io: outputs appear whole or not at all; damaged inputs are named, not tracebacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.io import atomic_path, read_input


def test_truncated_inputs_are_named(tmp_path: Path) -> None:
    table, ids = tmp_path / "train.parquet", tmp_path / "train_ids.npy"
    pd.DataFrame({"text": ["a", "b"] * 50}).to_parquet(table)
    np.save(ids, np.arange(1000))
    for path in (table, ids):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PipelineError, match=rf"prepared table {table} is damaged"):
        read_input(table, "prepared table", pd.read_parquet)
    with pytest.raises(PipelineError, match=rf"token ids {ids} is damaged"):
        read_input(ids, "token ids", lambda path: np.load(path, mmap_mode="r"))
    with pytest.raises(PipelineError, match=r"missing labels: .*nope.npy \(run the earlier"):
        read_input(tmp_path / "nope.npy", "labels", np.load)


def test_a_failed_block_leaves_the_old_output_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(ValueError), atomic_path(target) as staged:
        staged.write_text("half")
        raise ValueError("stage failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_reading_another_file_is_not_reported_as_a_write_error(tmp_path: Path) -> None:
    """An input that cannot be read inside the block keeps its own error (run_stage names
    that file); it used to be reported as "could not write <the output>"."""
    folder = tmp_path / "mirror.tar.gz"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as error, atomic_path(tmp_path / "raw") as staged:
        staged.write_bytes(folder.read_bytes())
    assert error.value.filename == str(folder)
    with pytest.raises(PipelineError, match="could not write"), \
            atomic_path(tmp_path / "raw") as staged:
        staged.mkdir()
        (staged / "missing-folder" / "file").write_text("x")  # a write into the output
