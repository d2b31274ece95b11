"""Few-label runs repeated with other seeds, side by side: one table from named DVC experiments.

Each experiment is a whole ``dvc exp run`` of the pipeline (README: Studies, the few-label
settings with ``self_training``); ``classifier.seed`` draws another 1,000 labeled reviews,
initializes the classifiers and orders their batches anew, with the same language model.
This reads each experiment's reports/metrics.json and reports/self_training.json from its
commit (the experiment's name is looked up under refs/exps, whatever commit it was based
on) and writes reports/studies/<out>.{md,json}: every variant's test accuracy per seed and
the mean, and per seed the self-trained RNN's margins against the few-label target.

    python docs/experiments/few_label_seeds.py few-labels-nb-gold \\
        few-labels-nb-gold-seed43 few-labels-nb-gold-seed44 --out self_training_n1000_nb_gold_seeds
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess

import yaml

from pipeline.config import flatten_dict
from pipeline.errors import PipelineError
from pipeline.io import atomic_path
from pipeline.stages.evaluate import fmt_pct as pct
from pipeline.studies import OUT, git_file, read_results

STUDENT = "rnn_pretrained_self_trained"
ORDER = [STUDENT, "bag_of_embeddings_lm_self_trained", "nb_logreg", "tfidf_logreg",
         "bag_of_embeddings_lm", "bag_of_embeddings", "rnn_pretrained", "rnn_scratch"]


def experiment_commits() -> dict[str, str]:
    """Experiment name -> commit, for every experiment in refs/exps (any baseline)."""
    refs = subprocess.run(["git", "for-each-ref", "refs/exps", "--format=%(refname) %(objectname)"],
                          capture_output=True, text=True, check=True).stdout
    return {ref.rsplit("/", 1)[1]: commit for ref, commit in
            (line.split() for line in refs.splitlines()) if "/exec/" not in ref}


# what may differ between the runs: the seed after pretraining (runtime.seed, the language
# model's, may not) and the study points, which no stage reads
IGNORED = ("classifier.seed", "studies.")


def settings_differ(first: dict, other: dict) -> list[str]:
    """The params.yaml keys on which two runs differ, IGNORED aside."""
    a, b = flatten_dict(first), flatten_dict(other)
    return sorted(k for k in a.keys() | b.keys()
                  if not k.startswith(IGNORED) and a.get(k) != b.get(k))


def seed_of(params: dict) -> int:
    classifier_seed = params.get("classifier", {}).get("seed")
    return params["runtime"]["seed"] if classifier_seed is None else classifier_seed


def signed(value: float) -> str:
    return f"{100 * value:+.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+", help="DVC experiment names")
    parser.add_argument("--out", default="few_label_seeds", help="file stem in reports/studies")
    args = parser.parse_args()
    commits = experiment_commits()
    runs = []
    for name in args.experiments:
        if name not in commits:
            raise PipelineError(f"no DVC experiment named {name} (git for-each-ref refs/exps)")
        commit = commits[name]
        params = yaml.safe_load(git_file(commit, "params.yaml") or "{}")
        metrics = read_results(lambda path, commit=commit: git_file(commit, path),
                               f"experiment {name}")
        if metrics is None or STUDENT not in metrics["classifiers"]:
            raise PipelineError(f"experiment {name} has no {STUDENT} results "
                                "(self_training.teachers was empty?)")
        differ = runs and settings_differ(runs[0]["params"], params)
        if differ:
            raise PipelineError(f"experiment {name} differs from {runs[0]['experiment']} in "
                                f"more than the seed: {', '.join(differ)}")
        runs.append({"experiment": name, "commit": commit, "seed": seed_of(params),
                     "params": params,
                     "train_examples": params["classifier"]["train_examples"],
                     "teachers": params["self_training"]["teachers"],
                     "classifiers": metrics["classifiers"]})

    seeds = [run["seed"] for run in runs]
    variants = [v for v in ORDER if all(v in run["classifiers"] for run in runs)]
    accuracy = {v: [run["classifiers"][v]["test"]["accuracy"] for run in runs]
                for v in variants}
    lines = [f"# Few labels, {len(runs)} seeds", "",
             f"`classifier.train_examples` {runs[0]['train_examples']}, teachers "
             f"{runs[0]['teachers']}; one `dvc exp run` per seed (`classifier.seed`: the labeled "
             "sample, the classifiers' initialization and batch order; the same language model). "
             "Experiments: " + ", ".join(f"`{run['experiment']}`" for run in runs) + ".", "",
             "| test accuracy (%) | " + " | ".join(f"seed {s}" for s in seeds)
             + " | mean | min |", "|---|" + "---|" * (len(seeds) + 2)]
    for v in variants:
        lines.append(f"| `{v}` | " + " | ".join(pct(a) for a in accuracy[v])
                     + f" | **{pct(statistics.mean(accuracy[v]))}** | {pct(min(accuracy[v]))} |")
    lines += ["", f"`{STUDENT}` per seed (paired 95% bootstrap intervals from evaluate; the "
              "difference with `rnn_scratch` is of point estimates):", "",
              "| seed | accuracy [95% CI] | Δ vs `bag_of_embeddings` [95% CI] | "
              "Δ vs `nb_logreg` [95% CI] | Δ vs `rnn_scratch` | target: ≥ 85%, ≥ +5 over both | "
              "the same, the interval vs `bag_of_embeddings` above +5 |",
              "|---|---|---|---|---|---|---|"]
    per_seed = []
    for run in runs:
        entry = run["classifiers"][STUDENT]
        test, boe, nb = entry["test"], entry["vs_baseline"], entry.get("vs_nb_logreg")
        vs_scratch = test["accuracy"] - run["classifiers"]["rnn_scratch"]["test"]["accuracy"]
        met = (test["accuracy"] >= 0.85 and boe["accuracy_diff"] >= 0.05
               and vs_scratch >= 0.05)
        met_interval = met and boe["ci95"][0] >= 0.05
        per_seed.append({"seed": run["seed"], "experiment": run["experiment"],
                         "accuracy": test["accuracy"], "accuracy_ci95": test["accuracy_ci95"],
                         "vs_bag_of_embeddings": boe, "vs_nb_logreg": nb,
                         "vs_rnn_scratch": vs_scratch, "target_met": met,
                         "target_met_with_interval": met_interval,
                         "train_seconds": entry["train_seconds"]})
        low, high = test["accuracy_ci95"]
        nb_cell = (f"{signed(nb['accuracy_diff'])} [{signed(nb['ci95'][0])}, "
                   f"{signed(nb['ci95'][1])}]" if nb else "—")
        lines.append(f"| {run['seed']} | {pct(test['accuracy'])} [{pct(low)}, {pct(high)}] | "
                     f"{signed(boe['accuracy_diff'])} [{signed(boe['ci95'][0])}, "
                     f"{signed(boe['ci95'][1])}] | {nb_cell} | {signed(vs_scratch)} | "
                     f"{'yes' if met else 'no'} | {'yes' if met_interval else 'no'} |")
    lines += ["", "The target (issue #4): `rnn_pretrained` >= 85% with 1,000 labels and >= 5 "
              "points above both `bag_of_embeddings` and `rnn_scratch` trained on the same "
              "1,000; the last column also asks the 95% interval of the difference with "
              "`bag_of_embeddings` to lie entirely above +5."]
    markdown = "\n".join(lines) + "\n"
    OUT.mkdir(parents=True, exist_ok=True)
    with atomic_path(OUT / f"{args.out}.json") as tmp:
        tmp.write_text(json.dumps({"accuracy": dict(zip(["seeds", *variants],
                                                        [seeds, *accuracy.values()], strict=True)),
                                   "student": per_seed}, indent=2) + "\n")
    with atomic_path(OUT / f"{args.out}.md") as tmp:
        tmp.write_text(markdown, encoding="utf-8")
    print(markdown)


if __name__ == "__main__":
    try:
        main()
    except PipelineError as exc:
        raise SystemExit(f"error: {exc}") from None
