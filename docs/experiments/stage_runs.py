"""What the one-off scripts that rerun the pipeline's own stages outside DVC share: the
full configuration's long_cpu point's params with a few more settings, written to a file
the stages read, and one stage run as a subprocess that logs to MLflow (by default to an
sqlite store in the script's out dir, not the project's): a language model pretrained or a
classifier fine-tuned unless its file is there already."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))

from pipeline.config import load_params, with_overrides  # noqa: E402
from pipeline.studies import study_points  # noqa: E402


def long_cpu_params(out: Path, overrides: dict[str, object], reason: str, name: str) -> Path:
    """The project's params.yaml with the long_cpu point's settings, ``overrides`` and
    checkpoints under ``out``, as ``out / name``."""
    base = load_params(PROJECT / "params.yaml")
    point = study_points(base, "full_configuration")["long_cpu"].set
    params = with_overrides(base, {**point, **overrides,
                                   "runtime.checkpoint_dir": str(out / "checkpoints")}, reason)
    params_file = out / name
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    return params_file


def run_stage(stage: str, *args: str, out: Path) -> None:
    """``python -m pipeline.stages.<stage> <args>`` from the project root; raises if it fails."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ.get(
        "MLFLOW_TRACKING_URI", f"sqlite:///{out}/mlflow.db")}
    subprocess.run([sys.executable, "-m", f"pipeline.stages.{stage}", *args],
                   check=True, cwd=PROJECT, env=env)


def pretrain(direction: str, params_file: Path, data: Path, lm: Path, out: Path,
             *extra: str) -> None:
    """The pretrain stage's ``direction`` language model into ``lm`` (its metrics and curve
    beside it, as <stem>.json and <stem>.csv), unless it is there already."""
    if not lm.exists():
        stem = lm.with_suffix("")
        run_stage("pretrain", "--direction", direction, *extra, "--params", str(params_file),
                  "--data", str(data), "--out", str(lm), "--metrics", f"{stem}.json",
                  "--curve", f"{stem}.csv", out=out)


def fine_tune(variant: str, params_file: Path, data: Path, lm: Path, dest: Path,
              out: Path) -> None:
    """The train stage's ``variant`` from ``lm`` into ``dest``, unless it is there already."""
    if not (dest / f"{variant}.pt").exists():
        run_stage("train", variant, "--params", str(params_file), "--data", str(data),
                  "--lm", str(lm), "--out-dir", str(dest), "--reports", str(dest), out=out)
