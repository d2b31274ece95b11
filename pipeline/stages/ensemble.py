"""Stage 7b — ensemble: the forward and backward pretrained classifiers averaged.

Runs when params.yaml ``ensemble.directions`` is ``[backward]`` (the default; ULMFiT's
recipe): evaluates ``rnn_pretrained_backward`` and ``rnn_pretrained_ensemble`` (the mean
class probabilities of ``rnn_pretrained`` and ``rnn_pretrained_backward``), and with
``evaluate.hybrid_with`` the ensemble averaged with that n-gram baseline
(``rnn_pretrained_ensemble_with_nb_logreg``), on the same test set and bootstrap resamples
as evaluate, against the same baseline. The forward model's and
the baseline's test probabilities and metrics come from evaluate's outputs
(reports/test_probabilities.parquet, reports/metrics.json); only the backward model is run. Writes
reports/ensemble.json (the same layout as metrics.json) and reports/ensemble.md.
"""

from __future__ import annotations

from pipeline import tracking
from pipeline.artifacts import LM_REPORT_KEYS
from pipeline.config import BACKWARD_VARIANT, ENSEMBLES
from pipeline.errors import PipelineError, run_stage
from pipeline.io import atomic_outputs, read_json, require, write_json
from pipeline.stages.evaluate import (
    BASELINE,
    PROBABILITIES,
    STRONG_BASELINE,
    add_average,
    add_baseline_differences,
    add_costs,
    averaged_lines,
    evaluate_model,
    hybrid_name,
    lm_summary,
    log_test_metrics,
    read_probabilities,
    results_table,
    start_evaluation,
)


def main() -> None:
    run = start_evaluation(__doc__)
    params, models_dir, reports, info = run.params, run.models_dir, run.reports, run.info
    test, indices, labels = run.test, run.indices, run.test.labels
    lms = {name: read_json(require(reports / f"{name}.json", f"{name} metrics"), LM_REPORT_KEYS)
           for name in ("pretrain", "pretrain_backward")}
    (name, members), = ENSEMBLES.items()
    forward = members[0]  # evaluate already scored it and the baseline: reuse, don't redo
    ngram = params.evaluate.hybrid_with  # also averaged with the ensemble (null = none)
    metrics_path = require(reports / "metrics.json", "evaluate's metrics")
    evaluated = read_json(metrics_path, ("classifiers",))["classifiers"]
    needed = (forward, BASELINE, *([ngram] if ngram else []))
    if any(variant not in evaluated for variant in needed):
        raise PipelineError(f"{metrics_path} lacks one of {', '.join(needed)}: rerun evaluate "
                            "(dvc repro)")
    # the baselines the new results are compared with (evaluate's outputs)
    reused = tuple(dict.fromkeys((*needed, *[v for v in (STRONG_BASELINE,) if v in evaluated])))
    probs = read_probabilities(reports / PROBABILITIES, reused, info["label_names"], labels)
    results = {v: evaluated[v] for v in reused}
    sources = {}
    probs[BACKWARD_VARIANT], results[BACKWARD_VARIANT], sources[BACKWARD_VARIANT] = (
        evaluate_model(BACKWARD_VARIANT, models_dir, reports, test, indices, info,
                       run.runtime))
    # ULMFiT averages its forward and backward models' predictions
    add_average(name, members, probs, results, labels, info["label_names"], indices)
    new = [BACKWARD_VARIANT, name]
    if ngram:
        new.append(hybrid_name(name, ngram))
        add_average(new[-1], (name, ngram), probs, results, labels, info["label_names"],
                    indices)
    add_costs(results, {lm: metrics["train_seconds"] for lm, metrics in lms.items()})
    # evaluate already reports rnn_pretrained and the baseline: keep only what is new here
    shown = {v: results[v] for v in new}
    add_baseline_differences(shown, probs, labels, indices)  # evaluate did the others'
    lines = ["# Forward + backward ensemble (test set as in comparison.md)", "",
             *results_table({v: results[v] for v in (members[0], *shown)}), "",
             *averaged_lines(shown),
             "Backward language model: valid perplexity "
             f"{lms['pretrain_backward']['valid_perplexity']:.1f} "
             f"(forward: {lms['pretrain']['valid_perplexity']:.1f}).",
             "Intervals: paired percentile bootstrap over the test set (evaluate's resamples)."]
    with atomic_outputs(reports / "ensemble.json", reports / "ensemble.md") as (json_tmp, md_tmp):
        write_json(json_tmp, {"lm_backward": lm_summary(lms["pretrain_backward"]),
                              "classifiers": shown})
        md_tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n" + "\n".join(lines))

    with tracking.stage_run(params, "ensemble", "ensemble", ("data", "ensemble", "evaluate")):
        import mlflow

        log_test_metrics(shown, sources, "ensemble")
        mlflow.log_artifact(str(reports / "ensemble.json"))
        mlflow.log_artifact(str(reports / "ensemble.md"))


if __name__ == "__main__":
    run_stage("ensemble", main)
