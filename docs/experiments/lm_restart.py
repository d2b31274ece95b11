"""More pretraining of a finished language model (a warm restart) before fine-tuning.

One-off experiment, not a stage (2026-12-07). The 24 x 1,000-step language models left the
800-token forward + backward ensemble at 92.94% / 92.96% (two classifier seeds), and more
classifiers from the same two models stopped helping (reports/studies/longer_lm_ensemble.md);
each doubling of the language model had added about half a point to the forward classifier.
This continues lm24.py's forward language model for ``--epochs`` x 1,000 more steps (the
pretrain stage's ``--init``: its weights, a fresh AdamW and a new one-cycle schedule peaking at
``--lr``), fine-tunes the forward classifier on 800 tokens as the long_cpu_lm24 point does,
and scores it, alone and with lm24.py's backward 800-token classifier, paired on evaluate's
bootstrap resamples against the same classifiers from the 24 x 1,000-step model:

    python docs/experiments/lm_restart.py <finished run's root> <lm24.py's out dir> <out dir>

About 50 minutes per 12 x 1,000 steps and 20 for the classifier on the 2-core bf16 EPYC;
steps already done (their files in <out dir>) are skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the pipeline package
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts beside this one

from compare_with_committed_run import comparison_table, score_saved  # noqa: E402
from stage_runs import PROJECT, long_cpu_params, run_stage  # noqa: E402

from pipeline.config import load_params  # noqa: E402
from pipeline.studies import study_points  # noqa: E402

CLASSIFIER = "rnn_pretrained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run's root (data/vocab, models/)")
    parser.add_argument("lm24", type=Path, help="lm24.py's out dir (lm24.pt, max_len800/)")
    parser.add_argument("out", type=Path, help="where the language model and classifier go")
    parser.add_argument("--epochs", type=int, default=12, help="x 1,000 more steps")
    parser.add_argument("--lr", type=float, default=0.0015, help="the new cycle's peak LR")
    args = parser.parse_args()
    run, lm24, out = args.run.resolve(), args.lm24.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = run / "data/vocab"

    point = study_points(load_params(PROJECT / "params.yaml"), "full_configuration")
    fine_tuning = point["long_cpu_lm24"].set  # 800 tokens, as lm24.py's max_len800 pair
    params_file = long_cpu_params(
        out, {**fine_tuning, "pretrain.epochs": args.epochs, "pretrain.lr": args.lr},
        f"lm_restart.py: {args.epochs} x 1,000 more steps from lm24.pt", "params.yaml")
    lm = out / "lm_restart.pt"
    if not lm.exists():
        run_stage("pretrain", "--init", str(lm24 / "lm24.pt"), "--params", str(params_file),
                  "--data", str(data), "--out", str(lm), "--metrics", str(out / "lm_restart.json"),
                  "--curve", str(out / "lm_restart.csv"), out=out)
    if not (out / f"{CLASSIFIER}.pt").exists():
        run_stage("train", CLASSIFIER, "--params", str(params_file), "--data", str(data),
                  "--lm", str(lm), "--out-dir", str(out), "--reports", str(out), out=out)

    before = lm24 / "max_len800"
    files = {"forward restart": out / f"{CLASSIFIER}.pt",
             "forward lm24": before / f"{CLASSIFIER}.pt",
             "backward lm24": before / f"{CLASSIFIER}_backward.pt",
             "nb_logreg": run / "models/nb_logreg.pt"}
    test, proba, indices = score_saved(data, files, PROJECT / "params.yaml")
    rows = dict(proba)
    rows["ensemble restart"] = (proba["forward restart"] + proba["backward lm24"]) / 2
    rows["ensemble lm24"] = (proba["forward lm24"] + proba["backward lm24"]) / 2
    for name in ("ensemble restart", "ensemble lm24"):  # as evaluate's hybrid
        rows[f"{name} with nb_logreg"] = (rows[name] + proba["nb_logreg"]) / 2
    correct = {name: p.argmax(1) == test.labels for name, p in rows.items()}
    source = {name: str(files[name]) if name in files else "mean class probabilities"
              for name in rows}
    print("\n".join(comparison_table(
        correct, ("forward lm24", "ensemble lm24", "nb_logreg"), source, indices)))
    np.savez(out / "test_probabilities.npz", **{k.replace(" ", "_"): v for k, v in rows.items()})


if __name__ == "__main__":
    main()
