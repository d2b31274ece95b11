"""More pretraining of a finished language model (a warm restart) before fine-tuning.

One-off experiment, not a stage (2026-12-07). The 24 x 1,000-step language models left the
800-token forward + backward ensemble at 92.94% / 92.96% (two classifier seeds), and more
classifiers from the same two models stopped helping (reports/studies/longer_lm_ensemble.md);
each doubling of the language model had added about half a point to the forward classifier.
This continues lm24.py's language model(s) for ``--epochs`` x 1,000 more steps (the
pretrain stage's ``--init``: its weights, a fresh AdamW and a new one-cycle schedule peaking at
``--lr``), fine-tunes each direction's classifier on 800 tokens as the long_cpu_lm24 point
does, and scores them and their ensemble (with lm24.py's 800-token classifier for a direction
not continued), paired on evaluate's bootstrap resamples against lm24.py's 800-token pair,
then prints the same models' and ensembles' accuracy on valid:

    python docs/experiments/lm_restart.py <finished run's root> <lm24.py's out dir> <out dir> \
        [--directions forward backward]

Since then the pretrain stage does the same restart itself with ``pretrain.restart_epochs``
(the same model bit for bit; the long_cpu_lm24_restart point of studies.full_configuration).

About 47-51 minutes per 12 x 1,000 steps and 20 per classifier on the 2-core bf16 EPYC; steps
already done (their files in <out dir>) are skipped, so ``--directions forward backward`` after
a forward-only run adds the backward half.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the pipeline package
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts beside this one

from compare_with_committed_run import TestSplit, comparison_table  # noqa: E402
from stage_runs import PROJECT, fine_tune, long_cpu_params, pretrain  # noqa: E402

from pipeline.batching import Corpus  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.inference import saved_classifier_proba  # noqa: E402
from pipeline.studies import study_points  # noqa: E402

# direction -> (its classifier variant, lm24.py's language model, the continued one)
DIRECTIONS = {"forward": ("rnn_pretrained", "lm24.pt", "lm_restart.pt"),
              "backward": ("rnn_pretrained_backward", "lm24_backward.pt",
                           "lm_restart_backward.pt")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run's root (data/vocab, models/)")
    parser.add_argument("lm24", type=Path, help="lm24.py's out dir (lm24.pt, max_len800/)")
    parser.add_argument("out", type=Path, help="where the language model and classifier go")
    parser.add_argument("--directions", nargs="+", choices=list(DIRECTIONS),
                        default=["forward"])
    parser.add_argument("--epochs", type=int, default=12, help="x 1,000 more steps")
    parser.add_argument("--lr", type=float, default=0.0015, help="the new cycle's peak LR")
    parser.add_argument("--classifier-seed", type=int, default=None,
                        help="fine-tune with this classifier.seed, in <out dir>/seed<N>/, and "
                             "compare with lm24.py's max_len800_seed<N>/ pair")
    args = parser.parse_args()
    run, lm24, out = args.run.resolve(), args.lm24.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = run / "data/vocab"

    point = study_points(load_params(PROJECT / "params.yaml"), "full_configuration")
    fine_tuning = point["long_cpu_lm24"].set  # 800 tokens, as lm24.py's max_len800 pair
    settings = {**fine_tuning, "pretrain.epochs": args.epochs, "pretrain.lr": args.lr}
    reason = f"lm_restart.py: {args.epochs} x 1,000 more steps from lm24.py's models"
    params_file = long_cpu_params(out, settings, reason, "params.yaml")
    classifiers, pair = out, lm24 / "max_len800"  # where ours go, lm24.py's to compare with
    classifier_params = params_file
    if args.classifier_seed is not None:
        classifiers = out / f"seed{args.classifier_seed}"
        pair = lm24 / f"max_len800_seed{args.classifier_seed}"
        classifiers.mkdir(exist_ok=True)
        classifier_params = long_cpu_params(
            classifiers, settings | {"classifier.seed": args.classifier_seed}, reason,
            "params.yaml")
    for direction in args.directions:
        variant, before, after = DIRECTIONS[direction]
        pretrain(direction, params_file, data, out / after, out, "--init", str(lm24 / before))
        fine_tune(variant, classifier_params, data, out / after, classifiers, out)

    files = {f"{direction} lm24": pair / f"{variant}.pt"
             for direction, (variant, _, _) in DIRECTIONS.items()}
    files |= {f"{direction} restart": classifiers / f"{DIRECTIONS[direction][0]}.pt"
              for direction in args.directions}
    files["nb_logreg"] = run / "models/nb_logreg.pt"
    split = TestSplit.load(data, PROJECT / "params.yaml")
    rows = with_ensembles({name: split.proba(path)[0] for name, path in files.items()},
                          args.directions)
    correct = {name: p.argmax(1) == split.test.labels for name, p in rows.items()}
    source = {name: str(files[name]) if name in files else "mean class probabilities"
              for name in rows}
    print("\n".join(comparison_table(
        correct, ("forward lm24", "ensemble lm24", "nb_logreg"), source, split.indices)))
    np.savez(classifiers / "test_probabilities.npz",
             **{k.replace(" ", "_"): v for k, v in rows.items()})

    # The same on valid, the split a choice between these would be made on.
    valid = Corpus.load(data, "valid")
    valid_rows = with_ensembles(
        {name: saved_classifier_proba(path.stem, path.parent, valid, split.info,
                                      split.runtime)[0] for name, path in files.items()},
        args.directions)
    print(f"\nvalid accuracy ({len(valid):,} reviews):")
    for name, p in valid_rows.items():
        print(f"  {name}: {100 * (p.argmax(1) == valid.labels).mean():.2f}%")


def with_ensembles(proba: dict[str, np.ndarray], continued: list[str]) -> dict[str, np.ndarray]:
    """``proba`` (each model's class probabilities) and the ensembles made from them: the
    lm24 pair, the continued directions with lm24's for the others, each with nb_logreg."""
    rows = dict(proba)
    rows["ensemble lm24"] = (proba["forward lm24"] + proba["backward lm24"]) / 2
    rows["ensemble restart"] = sum(
        proba[f"{direction} restart" if direction in continued else f"{direction} lm24"]
        for direction in DIRECTIONS) / len(DIRECTIONS)
    for name in ("ensemble restart", "ensemble lm24"):  # as evaluate's hybrid
        rows[f"{name} with nb_logreg"] = (rows[name] + proba["nb_logreg"]) / 2
    return rows


if __name__ == "__main__":
    main()
