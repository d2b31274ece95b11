"""The full configuration's long_cpu point fine-tuned on 800 tokens per review instead of 400.

One-off experiment, not a stage (2026-12-06). In a finished long_cpu run (its 12 x 1,000-step
forward and backward language models, its classifiers fine-tuned on 400 tokens, its
nb_logreg), fine-tune one classifier per direction with max_len 800 (everything else as the
point: 3 epochs, adversarial training), then score singles, forward + backward ensembles, the
four together and each with nb_logreg, on evaluate's bootstrap resamples (paired), against
the run's own 400-token ensemble. Run from anywhere:

    python docs/experiments/long_cpu_800_tokens.py <long_cpu run root> <out dir>

It trains for about 21 minutes on the 2-core Xeon, then scores for 2.
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

DIRECTIONS = {"rnn_pretrained": "lm.pt", "rnn_pretrained_backward": "lm_backward.pt"}


def fine_tune(run: Path, out: Path) -> None:
    """The long_cpu point's params with 800 tokens per review, and one classifier per
    direction."""
    params_file = str(long_cpu_params(out, {"classifier.max_len": 800},
                                      "long_cpu with 800 tokens", "params_800.yaml"))
    for variant, lm in DIRECTIONS.items():
        if not (out / f"{variant}.pt").exists():
            run_stage("train", variant, "--params", params_file,
                      "--data", str(run / "data/vocab"), "--lm", str(run / "models" / lm),
                      "--out-dir", str(out), "--reports", str(out), out=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished long_cpu run's root")
    parser.add_argument("out", type=Path, help="where the 800-token classifiers go")
    args = parser.parse_args()
    run, out = args.run.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    fine_tune(run, out)

    files = {"forward 800": out / "rnn_pretrained.pt",
             "backward 800": out / "rnn_pretrained_backward.pt",
             "forward 400": run / "models/rnn_pretrained.pt",
             "backward 400": run / "models/rnn_pretrained_backward.pt",
             "nb_logreg": run / "models/nb_logreg.pt"}
    test, proba, indices = score_saved(run / "data/vocab", files, PROJECT / "params.yaml")
    rows = dict(proba)
    rows["ensemble 800"] = (proba["forward 800"] + proba["backward 800"]) / 2
    rows["ensemble 400"] = (proba["forward 400"] + proba["backward 400"]) / 2
    rows["all four"] = (rows["ensemble 800"] + rows["ensemble 400"]) / 2
    for ensemble in ("ensemble 800", "ensemble 400", "all four"):  # as the ensemble stage
        rows[f"{ensemble} with nb_logreg"] = (rows[ensemble] + proba["nb_logreg"]) / 2
    correct = {name: p.argmax(1) == test.labels for name, p in rows.items()}
    source = {name: str(files[name]) if name in files else "mean class probabilities"
              for name in rows}
    print("\n".join(comparison_table(correct, ("ensemble 400", "nb_logreg"), source, indices)))
    np.savez(out / "test_probabilities.npz", **{k.replace(" ", "_"): v for k, v in rows.items()})


if __name__ == "__main__":
    main()
