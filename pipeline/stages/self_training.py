"""Stage 7c — self-training report: the students against the same classifiers without it.

Runs when params.yaml ``self_training.teachers`` names a teacher (off by default). Evaluates
each student (``<student>_self_trained``: retrained on the labeled examples plus the
teacher's pseudo-labeled unlabeled reviews) on the same test set and bootstrap resamples as
evaluate, against the same baseline, and against the same variant trained on the labeled
examples alone (the gain from self-training, with its paired 95% interval). The other
classifiers' test probabilities and metrics come from evaluate's outputs; only the students
are run. A student's cost counts its own training, its teacher's, the pseudo-labelling and
the language model either used. With ``evaluate.hybrid_with``, the rnn_pretrained student
is also averaged with that n-gram baseline (``rnn_pretrained_self_trained_with_nb_logreg``).
Writes reports/self_training.json (the layout of metrics.json) and reports/self_training.md.
"""

from __future__ import annotations

from pipeline import tracking
from pipeline.artifacts import LM_REPORT_KEYS
from pipeline.config import EVALUATED, HYBRID_RNN, LANGUAGE_MODEL_OF, SELF_TRAINED
from pipeline.errors import PipelineError, run_stage
from pipeline.io import atomic_outputs, read_json, require, write_json
from pipeline.metrics import difference_interval
from pipeline.stages.evaluate import (
    BASELINE,
    PROBABILITIES,
    add_average,
    add_baseline_differences,
    averaged_lines,
    evaluate_model,
    hybrid_name,
    log_test_metrics,
    read_probabilities,
    results_table,
    start_evaluation,
)

STUDENTS_DIR = "self_trained"  # models/self_trained/<student>.pt, reports/self_trained/train/...
PSEUDO_LABELS_REPORT = "pseudo_labels.json"


def main() -> None:
    run = start_evaluation(__doc__)
    params, reports, info = run.params, run.reports, run.info
    test, indices, labels = run.test, run.indices, run.test.labels
    settings = params.self_training
    if not settings.teachers:
        raise PipelineError("params.yaml self_training.teachers is [] (self-training off): "
                            "nothing to report")
    teacher, students = settings.teachers[0], settings.students
    pseudo = read_json(require(reports / PSEUDO_LABELS_REPORT, "pseudo_label's report"),
                       ("teacher", "unlabeled_read", "count", "per_class", "min_probability",
                        "seconds"))
    if pseudo["teacher"] != teacher:
        raise PipelineError(f"{reports / PSEUDO_LABELS_REPORT} is from teacher "
                            f"{pseudo['teacher']}, params.yaml asks for {teacher}: dvc repro")
    metrics_path = require(reports / "metrics.json", "evaluate's metrics")
    evaluated = read_json(metrics_path, ("classifiers",))["classifiers"]
    ngram = params.evaluate.hybrid_with  # averaged with the rnn_pretrained student
    hybrid_student = HYBRID_RNN + SELF_TRAINED if ngram and HYBRID_RNN in students else None
    needed = {BASELINE, teacher, *students, *([ngram] if hybrid_student else [])}
    if any(variant not in evaluated for variant in needed):
        raise PipelineError(f"{metrics_path} lacks one of {', '.join(sorted(needed))}: rerun "
                            "evaluate (dvc repro)")
    reused = [v for v in EVALUATED if v in evaluated]  # evaluate scored these: shown as well
    probs = read_probabilities(reports / PROBABILITIES, tuple(reused), info["label_names"],
                               labels)
    results = {v: evaluated[v] for v in reused}
    lm_seconds = {"pretrain": read_json(require(reports / "pretrain.json", "pretrain metrics"),
                                        LM_REPORT_KEYS)["train_seconds"]}
    sources, shown = {}, {}
    for student in students:
        name = student + SELF_TRAINED
        probs[name], results[name], sources[name] = evaluate_model(
            student, run.models_dir / STUDENTS_DIR, reports / STUDENTS_DIR, test, indices, info,
            run.runtime)
        lms = {LANGUAGE_MODEL_OF[v] for v in (student, teacher) if v in LANGUAGE_MODEL_OF}
        results[name]["total_train_seconds"] = (
            results[name]["train_seconds"] + results[teacher]["train_seconds"]
            + pseudo["seconds"] + sum(lm_seconds[lm] for lm in lms))
        # the gain from self-training: the same variant on the labeled examples alone
        correct = probs[name].argmax(1) == labels
        alone = probs[student].argmax(1) == labels
        results[name]["vs_supervised"] = {
            "variant": student, "accuracy_diff": float(correct.mean() - alone.mean()),
            "ci95": difference_interval(correct, alone, indices)}
        results[name]["teacher"] = teacher
        shown[name] = results[name]
    if hybrid_student:
        name = hybrid_name(hybrid_student, ngram)
        add_average(name, (hybrid_student, ngram), probs, results, labels, info["label_names"],
                    indices)
        # the student's cost (teacher, pseudo-labels, LM), and the n-gram model's unless it taught
        results[name]["total_train_seconds"] = results[hybrid_student]["total_train_seconds"] + (
            0.0 if ngram == teacher else results[ngram]["train_seconds"])
        shown[name] = results[name]
    add_baseline_differences(shown, probs, labels, indices)  # evaluate did the others'

    gains = []
    for name, entry in shown.items():
        if "vs_supervised" not in entry:
            continue  # the hybrid: not trained
        gain = entry["vs_supervised"]
        gains.append(f"- {name}: {100 * gain['accuracy_diff']:+.2f} points "
                     f"[{100 * gain['ci95'][0]:+.2f}, {100 * gain['ci95'][1]:+.2f}] "
                     f"vs {gain['variant']}")
    averaged = averaged_lines(shown)
    per_class = ", ".join(f"{n}: {c:,}" for n, c in pseudo["per_class"].items())
    lowest = ", ".join(f"{n}: {p:.4f}" for n, p in pseudo["min_probability"].items())
    lines = ["# Self-training (test set as in comparison.md)", "",
             *results_table({v: results[v] for v in (*reused, *shown)}), "",
             *averaged, *([""] if averaged else []),
             "Gain from self-training (paired 95% bootstrap interval):", "", *gains, "",
             f"Teacher: {teacher} (trained on the same {results[teacher]['train_examples']:,} "
             f"labeled reviews); it read {pseudo['unlabeled_read']:,} unlabeled reviews and "
             f"kept {pseudo['count']:,} ({per_class}; lowest probability kept: {lowest}).",
             "A student's time with its LM counts its training, the teacher's, the "
             "pseudo-labelling and the language model.",
             "Intervals: paired percentile bootstrap over the test set (evaluate's resamples)."]
    with atomic_outputs(reports / "self_training.json",
                        reports / "self_training.md") as (json_tmp, md_tmp):
        write_json(json_tmp, {"teacher": teacher, "pseudo_labels": pseudo,
                              "classifiers": shown})
        md_tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n" + "\n".join(lines))

    with tracking.stage_run(params, "self_training", "self_training",
                            ("data", "self_training", "evaluate")):
        import mlflow

        log_test_metrics(shown, sources, "self_training")
        mlflow.log_artifact(str(reports / "self_training.json"))
        mlflow.log_artifact(str(reports / "self_training.md"))


if __name__ == "__main__":
    run_stage("self_training", main)

