"""The full configuration's long_cpu point with language models twice as long (24 x 1,000 steps).

One-off experiment, not a stage (2026-12-06). long_cpu's language models of 12 x 1,000 steps
left its forward classifier at 92.00% and the forward + backward ensemble at 92.53%; each
doubling of the language model so far added about half a point to the forward classifier
(3 x 1,000: 90.96%, 6 x: 91.58%, 12 x: 92.00%). This trains the language model(s) of
24 x 1,000 steps on a finished run's data (the pipeline's own pretrain stage, resumable from
its checkpoints if killed), fine-tunes one classifier per trained direction with long_cpu's
settings (400 tokens per review, 3 epochs, adversarial training), then scores them, their
ensemble and each averaged with the run's nb_logreg on evaluate's bootstrap resamples
(paired), against the run's own rnn_pretrained and nb_logreg. Run from anywhere:

    python docs/experiments/lm24.py <finished run's root> <out dir> [--directions forward backward]

Each language model takes about 100 minutes on the 2-core bf16 EPYC (98.6 measured), each
classifier about 18 (17.5); the steps already done (their files in <out dir>) are skipped.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # compare_with_committed_run

from compare_with_committed_run import comparison_table, score_saved  # noqa: E402

from pipeline.config import load_params, with_overrides  # noqa: E402
from pipeline.studies import study_points  # noqa: E402

# direction -> (its classifier variant, the language model's file in <out dir>)
DIRECTIONS = {"forward": ("rnn_pretrained", "lm24.pt"),
              "backward": ("rnn_pretrained_backward", "lm24_backward.pt")}


def write_params(out: Path) -> Path:
    """The project's params.yaml with the long_cpu point's settings and 24 LM epochs."""
    base = load_params(PROJECT / "params.yaml")
    point = study_points(base, "full_configuration")["long_cpu"].set
    params = with_overrides(base, {**point, "pretrain.epochs": 24,
                                   "runtime.checkpoint_dir": str(out / "checkpoints")},
                            "long_cpu with 24 x 1,000 LM steps")
    params_file = out / "params_lm24.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    return params_file


def train(run: Path, out: Path, directions: list[str]) -> None:
    params_file = write_params(out)
    data = str(run / "data/vocab")
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ.get(
        "MLFLOW_TRACKING_URI", f"sqlite:///{out}/mlflow.db")}
    for direction in directions:
        variant, lm = DIRECTIONS[direction]
        stem = Path(lm).stem
        if not (out / lm).exists():
            subprocess.run([sys.executable, "-m", "pipeline.stages.pretrain",
                            "--direction", direction, "--params", str(params_file),
                            "--data", data, "--out", str(out / lm),
                            "--metrics", str(out / f"{stem}.json"),
                            "--curve", str(out / f"{stem}.csv")],
                           check=True, cwd=PROJECT, env=env)
        if not (out / f"{variant}.pt").exists():
            subprocess.run([sys.executable, "-m", "pipeline.stages.train", variant,
                            "--params", str(params_file), "--data", data,
                            "--lm", str(out / lm), "--out-dir", str(out),
                            "--reports", str(out)], check=True, cwd=PROJECT, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run's root (data/vocab, models/)")
    parser.add_argument("out", type=Path, help="where the language models and classifiers go")
    parser.add_argument("--directions", nargs="+", choices=list(DIRECTIONS),
                        default=list(DIRECTIONS))
    args = parser.parse_args()
    run, out = args.run.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    train(run, out, args.directions)

    files = {f"{direction} lm24": out / f"{DIRECTIONS[direction][0]}.pt"
             for direction in args.directions}
    files |= {"rnn_pretrained (the run's)": run / "models/rnn_pretrained.pt",
              "nb_logreg": run / "models/nb_logreg.pt"}
    test, proba, indices = score_saved(run / "data/vocab", files, PROJECT / "params.yaml")
    rows = dict(proba)
    members = [f"{direction} lm24" for direction in args.directions]
    if len(members) > 1:
        rows["ensemble lm24"] = sum(proba[name] for name in members) / len(members)
    best = "ensemble lm24" if len(members) > 1 else members[0]
    rows[f"{best} with nb_logreg"] = (rows[best] + proba["nb_logreg"]) / 2  # as evaluate's hybrid
    correct = {name: p.argmax(1) == test.labels for name, p in rows.items()}
    source = {name: str(files[name]) if name in files else "mean class probabilities"
              for name in rows}
    print("\n".join(comparison_table(correct, (best, "nb_logreg", "rnn_pretrained (the run's)"),
                                     source, indices)))
    np.savez(out / "test_probabilities.npz", **{k.replace(" ", "_"): v for k, v in rows.items()})


if __name__ == "__main__":
    main()
