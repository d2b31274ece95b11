"""pipeline.io: outputs appear whole or not at all; damaged inputs are named, not tracebacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.io import atomic_outputs, atomic_path, read_input, read_json


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


def test_outputs_written_together_appear_together(tmp_path: Path) -> None:
    """A stage's outputs (a model, then its reports) appear all at once: an error or Ctrl-C
    after the model is written but before the reports leaves neither."""
    model, report = tmp_path / "models" / "clf.pt", tmp_path / "reports" / "clf.json"
    with pytest.raises(KeyboardInterrupt), atomic_outputs(model, report) as (model_tmp, _):
        model_tmp.write_text("weights")
        raise KeyboardInterrupt
    with pytest.raises(RuntimeError, match=rf"nothing was written for {report}"), \
            atomic_outputs(model, report) as (model_tmp, _):
        model_tmp.write_text("weights")
    assert not model.exists() and not report.exists()
    assert sorted(tmp_path.rglob("*")) == [tmp_path / "models", tmp_path / "reports"]

    with atomic_outputs(model, report) as (model_tmp, report_tmp):
        model_tmp.write_text("weights")
        report_tmp.write_text("{}")
    assert model.read_text() == "weights" and report.read_text() == "{}"


def test_a_report_lacking_a_key_is_named(tmp_path: Path) -> None:
    """A report from an older version (or edited by hand) used to stop evaluate with a bare
    KeyError; now the file and the missing keys are named."""
    report = tmp_path / "train" / "rnn_scratch.json"
    report.parent.mkdir()
    report.write_text('{"valid_accuracy": 0.9}')
    with pytest.raises(PipelineError, match=rf"{report} lacks 'train_seconds', 'mlflow_run_id':"
                                            r" delete it and run the stage"):
        read_json(report, ("valid_accuracy", "train_seconds", "mlflow_run_id"))
    report.write_text("[1, 2]")
    with pytest.raises(PipelineError, match="lacks 'valid_accuracy'"):
        read_json(report, ("valid_accuracy",))
    assert read_json(report) == [1, 2]
