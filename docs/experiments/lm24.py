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
    python docs/experiments/lm24.py <finished run's root> <out dir> --also classifier.max_len=800

Each language model takes about 100 minutes on the 2-core bf16 EPYC (98.6 forward, 94.9
backward measured), each classifier about 17 (17.5, 16.5), scoring 3; the steps already done
(their files in <out dir>) are skipped. ``--also key=value`` (repeatable) fine-tunes one more
classifier per direction on the same language models with those settings on top (in
<out dir>/<settings>/) and scores the four together: with the 12 x 1,000-step models, a second
pair fine-tuned on 800 tokens made the four-member ensemble +0.18 better than the pair
(reports/studies/longer_lm_ensemble.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the pipeline package
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts beside this one

from compare_with_committed_run import comparison_table, score_saved  # noqa: E402
from stage_runs import PROJECT, fine_tune, long_cpu_params, pretrain  # noqa: E402

from pipeline.studies import setting  # noqa: E402

# direction -> (its classifier variant, the language model's file in <out dir>)
DIRECTIONS = {"forward": ("rnn_pretrained", "lm24.pt"),
              "backward": ("rnn_pretrained_backward", "lm24_backward.pt")}


def settings_dir(out: Path, settings: dict[str, object]) -> Path:
    """Where the classifiers fine-tuned with ``settings`` go, e.g. <out>/max_len800."""
    return out / "_".join(f"{key.rsplit('.', 1)[-1]}{value}" for key, value in settings.items())


def train(run: Path, out: Path, directions: list[str], also: dict[str, object],
          extra: Path | None) -> None:
    """The language models and one classifier each in ``out``; with ``also``, one more
    classifier each fine-tuned with those settings in ``extra``."""
    overrides = {"pretrain.epochs": 24}
    params_file = long_cpu_params(out, overrides, "long_cpu with 24 x 1,000 LM steps",
                                  "params_lm24.yaml")
    data = run / "data/vocab"
    for direction in directions:
        variant, lm = DIRECTIONS[direction]
        pretrain(direction, params_file, data, out / lm, out)
        fine_tune(variant, params_file, data, out / lm, out, out)
    if extra is None:
        return
    extra.mkdir(exist_ok=True)
    extra_params = long_cpu_params(extra, overrides | also, f"lm24.py --also {also}",
                                   "params.yaml")
    for direction in directions:
        variant, lm = DIRECTIONS[direction]
        fine_tune(variant, extra_params, data, out / lm, extra, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run's root (data/vocab, models/)")
    parser.add_argument("out", type=Path, help="where the language models and classifiers go")
    parser.add_argument("--directions", nargs="+", choices=list(DIRECTIONS),
                        default=list(DIRECTIONS))
    parser.add_argument("--also", action="append", default=[], metavar="KEY=VALUE",
                        type=setting,
                        help="fine-tune and score one more classifier per direction with "
                             "these settings on top (repeatable: all apply to that one pair)")
    args = parser.parse_args()
    run, out = args.run.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    also = dict(args.also)
    extra = settings_dir(out, also) if also else None
    train(run, out, args.directions, also, extra)

    files = {f"{direction} lm24": out / f"{DIRECTIONS[direction][0]}.pt"
             for direction in args.directions}
    if extra is not None:
        files |= {f"{direction} lm24 {extra.name}": extra / f"{DIRECTIONS[direction][0]}.pt"
                  for direction in args.directions}
    files |= {"rnn_pretrained (the run's)": run / "models/rnn_pretrained.pt",
              "nb_logreg": run / "models/nb_logreg.pt"}
    test, proba, indices = score_saved(run / "data/vocab", files, PROJECT / "params.yaml")
    rows = dict(proba)

    def mean(names: list[str]) -> np.ndarray:  # as the ensemble stage: mean class probabilities
        return sum(proba[name] for name in names) / len(names)

    members = [f"{direction} lm24" for direction in args.directions]
    best = members[0]
    if len(members) > 1:
        best = "ensemble lm24"
        rows[best] = mean(members)
    rows[f"{best} with nb_logreg"] = (rows[best] + proba["nb_logreg"]) / 2  # as evaluate's hybrid
    if extra is not None:
        extra_members = [f"{member} {extra.name}" for member in members]
        rows[f"ensemble lm24 {extra.name}"] = mean(extra_members)
        rows["all members"] = mean(members + extra_members)
        for name in (f"ensemble lm24 {extra.name}", "all members"):
            rows[f"{name} with nb_logreg"] = (rows[name] + proba["nb_logreg"]) / 2
    correct = {name: p.argmax(1) == test.labels for name, p in rows.items()}
    source = {name: str(files[name]) if name in files else "mean class probabilities"
              for name in rows}
    print("\n".join(comparison_table(correct, (best, "nb_logreg", "rnn_pretrained (the run's)"),
                                     source, indices)))
    np.savez((extra or out) / "test_probabilities.npz",
             **{k.replace(" ", "_"): v for k, v in rows.items()})


if __name__ == "__main__":
    main()
