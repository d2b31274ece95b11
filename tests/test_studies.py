"""Studies: real `dvc exp run --queue` sweeps on the tiny project, collected into reports."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

import pipeline.studies
from pipeline.config import (
    EVALUATED,
    HYBRID_RNN,
    VARIANTS,
    StudiesParams,
    StudyPoint,
    load_params,
)
from pipeline.errors import PipelineError
from pipeline.metrics import bootstrap_indices, difference_interval
from pipeline.stages.evaluate import hybrid_name
from pipeline.studies import (
    NO_WORKERS,
    Reader,
    queue_point,
    queue_rows,
    queue_states,
    study_points,
)
from tests.conftest import TinyRun, copy_project, ran_stages, run, stop_queue_workers

HYBRID = hybrid_name(HYBRID_RNN, "nb_logreg")  # params.yaml evaluate.hybrid_with

pytestmark = pytest.mark.slow

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}


# `dvc queue status` as it stood in a run where a worker took a task and shut down ("empty
# queue") before running it: the task stayed Running with no worker (2026-11-27)
ORPHANED_STATUS = """\
Task     Name                   Created    Status
182b67f  budget-lm_short        08:00 AM   Running
bb9c839  lc-n8                  07:55 AM   Success
efe95fd  ablation-base          07:57 AM   Success
ce3709a  ablation-last_pooling  07:57 AM   Success

Worker status: 0 active, 0 idle
"""


def test_queue_states_reads_dvc_queue_status() -> None:
    names = ["budget-lm_short", "budget-lm_long", "lc-n8"]
    assert queue_states(ORPHANED_STATUS, names) == {"budget-lm_short": "Running",
                                                     "lc-n8": "Success"}
    assert NO_WORKERS in ORPHANED_STATUS  # what `studies` takes for "no worker at all"
    assert queue_rows(ORPHANED_STATUS, names)[0] == ("182b67f", "budget-lm_short", "Running")
    # queued again after being killed: the old row stays (Failed) next to the new one
    requeued = ORPHANED_STATUS.replace("182b67f  budget-lm_short        08:00 AM   Running",
                                       "94bf70d  budget-lm_short        08:15 AM   Running\n"
                                       "182b67f  budget-lm_short        08:00 AM   Failed")
    assert queue_states(requeued, names)["budget-lm_short"] == "Running"
    done = requeued.replace("08:15 AM   Running", "08:15 AM   Success")
    assert queue_states(done, names)["budget-lm_short"] == "Success"
    # the killed task's row is left out once it is known to be stale
    assert queue_states(requeued, names, stale={"94bf70d"})["budget-lm_short"] == "Failed"
    assert queue_states(requeued, names, stale={"182b67f"})["budget-lm_short"] == "Running"


def test_wait_takes_a_task_missing_from_one_listing_for_not_done(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`dvc queue status` scans started tasks before queued ones, so a task a worker takes
    in between is in neither (seen in CI, 2026-11-28). `wait` must not read that as done,
    nor read a stale row of the same name as the result."""
    old_row = "182b67f  lc-n8   08:00 AM   Failed"
    listings = iter([
        f"Task Name Created Status\n{old_row}\n\nWorker status: 1 active, 0 idle\n",
        f"Task Name Created Status\n{old_row}\n\nWorker status: 1 active, 0 idle\n",
        f"Task Name Created Status\n94bf70d  lc-n8   08:15 AM   Running\n{old_row}\n\n"
        "Worker status: 1 active, 0 idle\n",
        f"Task Name Created Status\n94bf70d  lc-n8   08:15 AM   Success\n{old_row}\n\n"
        "Worker status: 0 active, 1 idle\n"])
    polled: list[str] = []

    def fake_dvc(*args: str) -> str:
        polled.append(" ".join(args))
        return next(listings)

    monkeypatch.setattr(pipeline.studies, "dvc", fake_dvc)
    monkeypatch.setattr(pipeline.studies, "POLL_SECONDS", 0.0)
    points = {"n8": StudyPoint(set={"classifier.train_examples": 8})}
    pipeline.studies.wait(points, "lc", jobs=1, stale={"182b67f"})
    assert polled == ["queue status"] * 4  # waited through both listings without its task

    # a task that never comes back is an error, not a hang
    monkeypatch.setattr(pipeline.studies, "dvc", lambda *args: f"Task Name Created Status\n"
                        f"{old_row}\n\nWorker status: 1 active, 0 idle\n")
    with pytest.raises(PipelineError, match="lc-n8 left the queue"):
        pipeline.studies.wait(points, "lc", jobs=1, stale={"182b67f"})


def test_a_running_task_whose_process_is_alive_is_not_killed_for_a_silent_worker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker too busy to answer DVC's ping (a fine-tuning stage on both cores) makes
    `dvc queue status` say "0 active, 0 idle" beside a Running task, as a worker that
    dropped the task does; the study killed a healthy stage for this (2026-12-08). While
    `dvc exp show` gives the task a live process, `wait` keeps waiting."""
    running = ("Task Name Created Status\n94bf70d  lc-n8   08:15 AM   Running\n\n"
               f"{NO_WORKERS}\n")
    listings = iter([running] * 13 + ["Task Name Created Status\n"
                                      "94bf70d  lc-n8   08:15 AM   Success\n"])
    shown = [{"rev": "b" * 40, "name": "main", "experiments": [
        exp_show_group("lc-n8", "running", "94bf70d" + "0" * 33, os.getpid())]}]
    calls: list[tuple[str, ...]] = []

    def fake_dvc(*args: str) -> str:
        calls.append(args)
        return json.dumps(shown) if args[:2] == ("exp", "show") else next(listings)

    monkeypatch.setattr(pipeline.studies, "dvc", fake_dvc)
    monkeypatch.setattr(pipeline.studies, "POLL_SECONDS", 0.0)
    monkeypatch.setattr(pipeline.studies, "queue_point", lambda *args: calls.append(args))
    monkeypatch.setattr(pipeline.studies, "start_workers", lambda jobs: calls.append(("start",)))
    points = {"n8": StudyPoint(set={"classifier.train_examples": 8})}
    pipeline.studies.wait(points, "lc", jobs=1, baseline="b" * 40)
    assert [args for args in calls if args[0] != "queue"] == [
        ("exp", "show", "--json", "--rev", "b" * 40)] * 2  # after 6 polls, after 12
    assert calls.count(("queue", "status")) == 14  # no kill, no requeue, no restart

    # its process gone, the same listing is an orphaned task: killed and queued again
    shown[0]["experiments"][0]["executor"]["local"]["pid"] = finished_process_pid()
    listings = iter([running] * 6 + ["Task Name Created Status\n"
                                     "5c0ffee  lc-n8   08:30 AM   Success\n"])
    calls.clear()
    monkeypatch.setattr(pipeline.studies.subprocess, "run",
                        lambda args, **kwargs: calls.append(tuple(args)))
    pipeline.studies.wait(points, "lc", jobs=1, baseline="b" * 40)
    assert ("dvc", "queue", "kill", "94bf70d") in calls
    assert ("lc", "n8", points["n8"]) in calls and ("start",) in calls


def test_study_points_layer_common_then_ablation_base_then_own_overrides() -> None:
    studies = StudiesParams(
        common={"classifier.max_len": 400, "classifier.patience": 3},
        learning_curve={"n8": StudyPoint(set={"classifier.train_examples": 8,
                                              "classifier.patience": 5})},
        ablation={"base": StudyPoint(set={"classifier.train_examples": 16}),
                  "last": StudyPoint(set={"classifier.rnn_pretrained.pooling": "last",
                                          "classifier.max_len": 200}, description="d")},
    )
    params = load_params(Path(__file__).parents[1] / "params.yaml")
    params = params.model_copy(update={"studies": studies})
    assert study_points(params, "learning_curve")["n8"].set == {
        "classifier.max_len": 400, "classifier.patience": 5, "classifier.train_examples": 8}
    ablation = study_points(params, "ablation")
    assert ablation["base"].set == {"classifier.max_len": 400, "classifier.patience": 3,
                                    "classifier.train_examples": 16}
    assert ablation["last"].set == {"classifier.max_len": 200, "classifier.patience": 3,
                                    "classifier.train_examples": 16,
                                    "classifier.rnn_pretrained.pooling": "last"}
    assert ablation["last"].description == "d"
    with pytest.raises(PipelineError, match="no points in studies.pretraining_budget"):
        study_points(params, "pretraining_budget")
    misspelt = studies.model_copy(update={"learning_curve": {
        "n8": StudyPoint(set={"classifier.rnn_pretrained.poolng": "last"})}})
    with pytest.raises(PipelineError, match=r"studies.learning_curve.n8:\n.*poolng: unknown key"):
        study_points(params.model_copy(update={"studies": misspelt}), "learning_curve")
    too_long = studies.model_copy(update={"common": {"classifier.max_len": 2}})
    with pytest.raises(PipelineError, match="classifier.max_len"):  # out of range, via common
        study_points(params.model_copy(update={"studies": too_long}), "ablation")


def test_every_study_point_in_params_yaml_is_valid() -> None:
    params = load_params(Path(__file__).parents[1] / "params.yaml")
    for study in ("learning_curve", "ablation", "pretraining_budget", "full_configuration"):
        assert study_points(params, study)  # validates each point's overrides, or raises


PARAMS = Path(__file__).parents[1] / "params.yaml"


def settings_with_studies(path: Path, studies: dict) -> Path:
    """A copy of params.yaml at ``path`` with these study points (replacing the real ones)."""
    raw = yaml.safe_load(PARAMS.read_text())
    raw["studies"] = studies
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


QUEUED_FROM = "0123abc"  # run_studies_main's stand-in for the commit points are queued from


def run_studies_main(monkeypatch: pytest.MonkeyPatch, *argv: str) -> list[str]:
    """``python -m pipeline.studies ARGV`` in this process, with queueing replaced by a
    record of what would have been queued: a test's failure must not start DVC. The points
    count as queued from commit QUEUED_FROM."""
    queued: list[str] = []
    monkeypatch.setattr(pipeline.studies, "queue",
                        lambda points, prefix, jobs: queued.extend(points) or QUEUED_FROM)
    monkeypatch.setattr(sys, "argv", ["studies", *argv])
    pipeline.studies.main()
    return queued


def fake_metrics(accuracies: dict[str, float], train_examples: int = 16) -> dict:
    """reports/metrics.json with what the reports read, one classifier per variant."""
    return {"lm": {"tokens": 1000, "valid_perplexity": 99.0},
            "classifiers": {variant: {
                "test": {"accuracy": accuracy, "accuracy_ci95": [accuracy - 0.01, accuracy + 0.01]},
                "train_examples": train_examples, "train_seconds": 1.0,
                "total_train_seconds": 2.0} for variant, accuracy in accuracies.items()}}


def test_ablation_variant_the_base_lacks_gets_no_delta(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A point switching the ensemble on adds rnn_pretrained_backward and the ensemble,
    which the base never ran: no delta for them (was a KeyError after the whole queue)."""
    studies = StudiesParams(ablation={
        "base": StudyPoint(set={"ensemble.directions": []}),
        "with_backward": StudyPoint(set={"ensemble.directions": ["backward"]},
                                    description="backward LM + ensemble")})
    params = load_params(PARAMS).model_copy(update={"studies": studies})
    base = dict.fromkeys(VARIANTS, 0.75)
    results = {"base": fake_metrics(base),
               "with_backward": fake_metrics(base | {"rnn_pretrained": 0.8,
                                                     "rnn_pretrained_backward": 0.78,
                                                     "rnn_pretrained_ensemble": 0.82})}
    monkeypatch.setattr(pipeline.studies, "point_readers",  # runs without predictions
                        lambda prefix, names, baseline: dict.fromkeys(names, lambda path: None))
    monkeypatch.setattr(pipeline.studies, "collect", lambda prefix, names, readers: results)
    monkeypatch.setattr(pipeline.studies, "OUT", tmp_path)
    pipeline.studies.ablation_report(params)
    table = pd.read_csv(tmp_path / "ablation.csv")
    changed = table[table.point == "with_backward"].set_index("variant").delta_vs_base
    assert changed["rnn_pretrained"] == pytest.approx(0.05)
    assert changed[["rnn_pretrained_backward", "rnn_pretrained_ensemble"]].isna().all()
    assert table.delta_ci_low.isna().all()  # no predictions, no paired interval
    markdown = (tmp_path / "ablation.md").read_text()
    assert "| rnn_pretrained | 80.00 [79.0, 81.0] | +5.00 |" in markdown
    assert "| rnn_pretrained_backward | 78.00 [77.0, 79.0] | — |" in markdown


def predictions_csv(correct: np.ndarray) -> str:
    """evaluate's predictions_<variant>.csv for a test set of alternating labels, right
    where ``correct`` is."""
    actual = np.where(np.arange(len(correct)) % 2 == 0, "pos", "neg")
    predicted = np.where(correct, actual, np.where(actual == "pos", "neg", "pos"))
    return pd.DataFrame({"actual": actual, "predicted": predicted}).to_csv(index=False)


def test_study_differences_are_paired_on_evaluates_resamples(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ablation's Δ vs base and the learning curve's pretraining Δ carry the interval
    evaluate would give the two models side by side: the same test examples, resampled
    together with evaluate's samples and seed. Unpaired, two runs each ~75% right would
    give an interval ~10 times wider than one that differs on 10 examples of 200."""
    rng = np.random.default_rng(0)
    base = rng.random(200) < 0.75
    better = base.copy()
    better[np.flatnonzero(~base)[:10]] = True  # right on 10 more examples, wrong on none
    scratch = rng.random(200) < 0.7
    variants = {"rnn_pretrained", "rnn_scratch", "bag_of_embeddings", "nb_logreg"}
    files = {
        "base": {f"reports/plots/predictions_{v}.csv": predictions_csv(base) for v in variants}
        | {"reports/plots/predictions_rnn_scratch.csv": predictions_csv(scratch)},
        "better": {"reports/plots/predictions_rnn_pretrained.csv": predictions_csv(better)},
        "other_test_set": {"reports/plots/predictions_rnn_pretrained.csv":
                           predictions_csv(better[:100])},
    }
    accuracy = {"rnn_pretrained": base.mean(), "rnn_scratch": scratch.mean(),
                "bag_of_embeddings": base.mean(), "nb_logreg": base.mean()}
    results = {"base": fake_metrics(accuracy, 200),
               "better": fake_metrics({"rnn_pretrained": better.mean()}, 200),
               "other_test_set": fake_metrics({"rnn_pretrained": better[:100].mean()}, 200)}
    monkeypatch.setattr(pipeline.studies, "point_readers",
                        lambda prefix, names, baseline: {n: files[n].get for n in names})
    monkeypatch.setattr(pipeline.studies, "collect",
                        lambda prefix, names, readers: {n: results[n] for n in names})
    monkeypatch.setattr(pipeline.studies, "OUT", tmp_path)
    params = load_params(PARAMS)
    indices = bootstrap_indices(200, params.evaluate.bootstrap_samples, params.evaluate.seed)
    expected = difference_interval(better, base, indices)
    assert 0 < expected[0] < 0.05 < expected[1] < 0.1

    points = {name: StudyPoint(set={}, description=name) for name in results}
    pipeline.studies.ablation_report(params.model_copy(update={
        "studies": StudiesParams(ablation=points)}))
    table = pd.read_csv(tmp_path / "ablation.csv").set_index("point")
    row = table.loc["better"]
    assert row.delta_vs_base == pytest.approx(0.05)
    assert (row.delta_ci_low, row.delta_ci_high) == pytest.approx(expected)
    # scored on another test set: the Δ of accuracies stays, with no interval to pair
    assert pd.isna(table.loc["other_test_set"].delta_ci_low)
    assert "| +5.00 [+2.50, +7.50] |" in (tmp_path / "ablation.md").read_text().replace(
        f"{100 * expected[0]:+.2f}", "+2.50").replace(f"{100 * expected[1]:+.2f}", "+7.50")

    monkeypatch.chdir(tmp_path)  # no workspace run here
    curve_params = params.model_copy(update={
        "studies": StudiesParams(learning_curve={"base": StudyPoint(set={})})})
    # a main run in the workspace joins the curve (every label), unless told it is no point
    # of this curve (a run with --set: the main run does not have those settings)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/metrics.json").write_text(json.dumps(fake_metrics(
        dict.fromkeys(variants, 0.9), 22500)))
    for main_run, sizes in ((False, [200]), (True, [200, 22500])):
        pipeline.studies.learning_curve_report(curve_params, main_run=main_run)
        curve = pd.read_csv(tmp_path / "learning_curve.csv")
        assert sorted(curve.train_examples.unique()) == sizes
    (tmp_path / "reports/metrics.json").unlink()
    pipeline.studies.learning_curve_report(curve_params)
    differences = pd.read_csv(tmp_path / "learning_curve_differences.csv").set_index("pair")
    pretraining = differences.loc["rnn_pretrained − rnn_scratch"]
    assert pretraining.delta == pytest.approx(base.mean() - scratch.mean())
    assert (pretraining.ci_low, pretraining.ci_high) == pytest.approx(
        difference_interval(base, scratch, indices))
    assert differences.loc["rnn_pretrained − nb_logreg"].ci_high == 0  # the same predictions
    assert "rnn_pretrained − bag_of_embeddings" in (tmp_path / "learning_curve.md").read_text()

    # a truncated or foreign predictions file is named, with the run it came from
    ablation = params.model_copy(update={"studies": StudiesParams(ablation=points)})
    predictions = "reports/plots/predictions_rnn_pretrained.csv"
    whole = predictions_csv(better)
    for damaged in (whole[:whole.rindex(",") + 1], "id,label\n1,pos\n"):
        files["better"][predictions] = damaged
        with pytest.raises(PipelineError, match=f"{predictions} of experiment ablation-better "
                                                "lacks the actual and predicted columns"):
            pipeline.studies.ablation_report(ablation)


def test_damaged_or_incomplete_reports_are_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A damaged metrics.json or ensemble.json, or one lacking a key the reports read, is a
    PipelineError naming the file and the run (was a JSONDecodeError or KeyError)."""
    good = json.dumps(fake_metrics(dict.fromkeys(VARIANTS, 0.75)))
    files = {"reports/metrics.json": '{"classifiers": ', "params.yaml": ""}
    revs = {"lc-n8": "abc123"}
    monkeypatch.setattr(pipeline.studies, "experiment_revs", lambda baseline: revs)
    monkeypatch.setattr(pipeline.studies, "git_file", lambda rev, path: files.get(path))
    with pytest.raises(PipelineError, match=r"reports/metrics.json of experiment lc-n8 is not "
                                            r"valid JSON .*without --report-only"):
        pipeline.studies.collect("lc", ["n8"])
    no_lm = fake_metrics(dict.fromkeys(VARIANTS, 0.75))
    del no_lm["lm"]
    del no_lm["classifiers"]["rnn_scratch"]["test"]["accuracy_ci95"]
    files["reports/metrics.json"] = json.dumps(no_lm)
    with pytest.raises(PipelineError, match=r"metrics.json of experiment lc-n8 lacks 'lm.tokens'"
                                            r".*'classifiers.rnn_scratch.test.accuracy_ci95'"):
        pipeline.studies.collect("lc", ["n8"])
    # the ensemble's report is read when that run had the ensemble on
    files |= {"reports/metrics.json": good, "params.yaml": "ensemble: {directions: [backward]}",
              "reports/ensemble.json": '{"lm_backward": {}}'}
    with pytest.raises(PipelineError, match=r"reports/ensemble.json of experiment lc-n8 lacks "
                                            r"'classifiers'"):
        pipeline.studies.collect("lc", ["n8"])
    files["reports/ensemble.json"] = json.dumps(
        {"classifiers": fake_metrics({"rnn_pretrained_ensemble": 0.8})["classifiers"]})
    assert "rnn_pretrained_ensemble" in pipeline.studies.collect("lc", ["n8"])["n8"][
        "classifiers"]
    # and self-training's, when that run had it on
    files |= {"params.yaml": "self_training: {teachers: [bag_of_embeddings_lm]}",
              "reports/self_training.json": json.dumps({"teacher": "bag_of_embeddings_lm"})}
    with pytest.raises(PipelineError, match=r"reports/self_training.json of experiment lc-n8 "
                                            r"lacks 'classifiers'"):
        pipeline.studies.collect("lc", ["n8"])
    files["reports/self_training.json"] = json.dumps(
        {"classifiers": fake_metrics({"rnn_pretrained_self_trained": 0.8})["classifiers"]})
    found = pipeline.studies.collect("lc", ["n8"])["n8"]["classifiers"]
    assert "rnn_pretrained_self_trained" in found and "rnn_pretrained_ensemble" not in found

    # the workspace's (the main run's), through the CLI: --report-only
    settings_with_studies(tmp_path / "params.yaml", {
        "pretraining_budget": {"lm_short": {"set": {"pretrain.epochs": 1}}}})
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/metrics.json").write_text('{"classifiers": ')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=r"reports/metrics.json of the workspace is not "
                                            r"valid JSON .*dvc repro"):
        run_studies_main(monkeypatch, "pretraining-budget", "--report-only")


def test_jobs_below_one_is_refused_before_anything_is_queued(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`dvc queue start -j 0` starts no worker: --jobs 0 used to queue every point, then
    wait three minutes and blame DVC, leaving the queue full."""
    for jobs in ("0", "-2"):
        with pytest.raises(SystemExit) as exited:
            queued = run_studies_main(monkeypatch, "ablation", "--jobs", jobs, "--params",
                                      str(PARAMS))
            raise AssertionError(f"--jobs {jobs} queued {queued}")
        assert exited.value.code == 2
        assert "--jobs: must be at least 1" in capsys.readouterr().err


def test_point_names_dvc_would_refuse_fail_before_anything_is_queued(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`lc-a b` is not a git ref name: DVC refused it after `lc-ok` had been queued."""
    good = ["lc-n1000", "ablation-last_pooling", "budget-lm.short-2", "lc-A.b_c-d", "lc-x.locks"]
    bad = ["lc-a b", "lc-x..y", "lc-x.lock", "lc-x.", "lc-a/b", "lc-a~b", "lc-a:b", "lc-a^b",
           "lc-a?b", "lc-a*b", "lc-a[b", "lc-a\\b", "lc-a@{b", "lc-é"]
    for name in good + bad:  # the rule is git's (as DVC applies it) or narrower
        checked = pipeline.studies.check_exp_name(name)
        assert checked == (name in good), name
        if checked:
            run(["git", "check-ref-format", f"refs/exps/ab/cdef/{name}"], cwd=tmp_path)
    other = settings_with_studies(tmp_path / "other.yaml", {"learning_curve": {
        "ok": {"set": {"classifier.train_examples": 8}},
        "a b": {"set": {"classifier.train_examples": 16}}}})
    with pytest.raises(PipelineError, match=r"other.yaml studies.learning_curve.a b: the "
                                            r"experiment name lc-a b is not one DVC takes"):
        queued = run_studies_main(monkeypatch, "learning-curve", "--params", str(other))
        raise AssertionError(f"queued {queued}")


def test_studies_errors_name_the_settings_file_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --params other.yaml, a bad point is reported in other.yaml, not params.yaml."""
    other = settings_with_studies(tmp_path / "other.yaml", {"learning_curve": {
        "n8": {"set": {"classifier.rnn_pretrained.poolng": "last"}}}})
    with pytest.raises(PipelineError) as error:
        run_studies_main(monkeypatch, "learning-curve", "--params", str(other))
    assert f"{other} studies.learning_curve.n8" in str(error.value)
    assert "poolng: unknown key" in str(error.value)
    assert "params.yaml" not in str(error.value)
    with pytest.raises(PipelineError, match=f"^{other} has no points in studies.ablation$"):
        run_studies_main(monkeypatch, "ablation", "--params", str(other))


def test_set_and_name_run_a_variant_of_a_study_beside_the_committed_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--set adds to studies.common for one run (a point's own settings still win, values
    read as YAML like `dvc exp run -S`); --name names its experiments and its reports, so
    the committed ablation.* is left alone and the report says how it was made."""
    other = settings_with_studies(tmp_path / "other.yaml", {"ablation": {
        "base": {"set": {"classifier.train_examples": 16}},
        "short_lm": {"description": "shorter LM", "set": {"pretrain.epochs": 2}}}})
    queued: dict[str, dict[str, StudyPoint]] = {}
    monkeypatch.setattr(pipeline.studies, "queue",
                        lambda points, prefix, jobs: queued.update({prefix: points}) or "c0ffee")
    collected: list[str] = []
    read_from: list[str] = []

    def fake_collect(prefix: str, names: list[str], readers: object) -> dict[str, dict]:
        collected.append(prefix)
        return {name: fake_metrics(dict.fromkeys(VARIANTS, 0.75)) for name in names}

    def fake_readers(prefix: str, names: list[str], baseline: str) -> dict[str, Reader]:
        read_from.append(baseline)
        return dict.fromkeys(names, lambda path: None)

    monkeypatch.setattr(pipeline.studies, "point_readers", fake_readers)
    monkeypatch.setattr(pipeline.studies, "collect", fake_collect)
    monkeypatch.setattr(pipeline.studies, "OUT", tmp_path)
    monkeypatch.setattr(sys, "argv", [
        "studies", "ablation", "--params", str(other), "--set", "pretrain.epochs=12",
        "--set", "ensemble.directions=[backward]", "--name", "ablation_lm12"])
    pipeline.studies.main()

    [(prefix, points)] = queued.items()
    assert prefix == collected[0] == "ablation_lm12"  # experiments ablation_lm12-<point>
    assert read_from == ["c0ffee"]  # the commit they were queued from, wherever HEAD is now
    assert points["base"].set["pretrain.epochs"] == 12  # an int, as dvc exp run -S reads it
    assert points["base"].set["ensemble.directions"] == ["backward"]
    assert points["short_lm"].set["pretrain.epochs"] == 2  # the point's own setting wins
    assert points["short_lm"].set["classifier.train_examples"] == 16  # and the base's
    assert not (tmp_path / "ablation.md").exists()
    markdown = (tmp_path / "ablation_lm12.md").read_text()
    assert (f"Made by `python -m pipeline.studies ablation --params {other} "
            "--set=pretrain.epochs=12 '--set=ensemble.directions=[\"backward\"]' "
            "--name ablation_lm12`") in markdown
    table = pd.read_csv(tmp_path / "ablation_lm12.csv")
    assert "pretrain.epochs=12" in table.set[0]

    # a misspelt or out-of-range --set fails before anything is queued, naming --set
    queued.clear()
    for bad, error in (("classifier.rnn_pretrained.poolng=last",
                        "classifier.rnn_pretrained.poolng: unknown key"),
                       ("pretrain.epochs=0", "pretrain.epochs: Input should be greater")):
        monkeypatch.setattr(sys, "argv", ["studies", "ablation", "--params", str(other),
                                          "--set", bad])
        with pytest.raises(PipelineError, match=f"invalid settings in --set:\n  {error}"):
            pipeline.studies.main()
    # so do a --set without "=" and a --name DVC would refuse as an experiment name
    for argv, error in ((["--set", "pretrain.epochs"], "expected KEY=VALUE"),
                        (["--name", "lm 12"], "use letters, digits")):
        monkeypatch.setattr(sys, "argv", ["studies", "ablation", "--params", str(other), *argv])
        with pytest.raises(SystemExit) as exited:
            pipeline.studies.main()
        assert exited.value.code == 2 and error in capsys.readouterr().err
    assert queued == {}


def test_only_runs_and_reports_the_points_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--only POINT: the full configuration's long CPU run without its GPU-sized one (days
    on a CPU); the ablation keeps its base, which every other point is compared with; a
    point that does not exist fails before anything is queued, listing the points."""
    other = settings_with_studies(tmp_path / "other.yaml", {
        "full_configuration": {"long_cpu": {"set": {"pretrain.epochs": 12}},
                               "gpu_size": {"set": {"model.hidden": 1150}}},
        "ablation": {"base": {"set": {"classifier.train_examples": 16}},
                     "short_lm": {"set": {"pretrain.epochs": 2}},
                     "no_concat": {"set": {"classifier.rnn_pretrained.pooling": "last"}}}})
    monkeypatch.setattr(pipeline.studies, "OUT", tmp_path)
    monkeypatch.setattr(pipeline.studies, "read_results", lambda read, where="": None)
    collected: list[list[str]] = []
    read_from: list[str] = []

    def fake_collect(prefix: str, names: list[str], readers: object = None,
                     baseline: str = "HEAD") -> dict[str, dict]:
        collected.append(names)
        read_from.append(baseline)
        return {name: fake_metrics(dict.fromkeys(VARIANTS, 0.75)) for name in names}

    monkeypatch.setattr(pipeline.studies, "collect", fake_collect)
    monkeypatch.setattr(pipeline.studies, "point_readers",
                        lambda prefix, names, baseline: dict.fromkeys(names, lambda path: None))
    assert run_studies_main(monkeypatch, "full-configuration", "--params", str(other),
                            "--only", "long_cpu") == ["long_cpu"]
    assert collected == [["long_cpu"]] and read_from == [QUEUED_FROM]
    # --report-only reads HEAD's experiments, or those queued from --rev
    for argv, baseline in ((["--report-only"], "HEAD"),
                           (["--report-only", "--rev", "b0fe"], "b0fe")):
        assert run_studies_main(monkeypatch, "full-configuration", "--params", str(other),
                                "--only", "long_cpu", *argv) == []
        assert read_from[-1] == baseline
    with pytest.raises(SystemExit) as exited:  # --rev would change nothing in a run
        run_studies_main(monkeypatch, "full-configuration", "--params", str(other),
                         "--only", "long_cpu", "--rev", "b0fe")
    assert exited.value.code == 2
    markdown = (tmp_path / "full_configuration.md").read_text()
    assert "long_cpu: pretrain.epochs=12" in markdown and "gpu_size" not in markdown
    assert (f"Made by `python -m pipeline.studies full-configuration --params {other} "
            "--only long_cpu`") in markdown
    assert run_studies_main(monkeypatch, "ablation", "--params", str(other),
                            "--only", "no_concat") == ["base", "no_concat"]
    for argv in (["full-configuration", "--only", "long"],
                 ["ablation", "--only", "no_concat", "--only", "base_lm"]):
        with pytest.raises(PipelineError, match=r"^--only (long|base_lm): no such point in "
                                                r"studies\.\w+ of .*other.yaml \(its points: "):
            queued = run_studies_main(monkeypatch, *argv, "--params", str(other))
            raise AssertionError(f"queued {queued}")


def test_only_keeps_the_other_points_rows_in_a_cost_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full configuration point rerun with --only replaces its own rows in the report and
    keeps the other points' (their runs may be hours long, on another machine), marked as
    not rerun; an earlier report that cannot be read is named, not overwritten."""
    other = settings_with_studies(tmp_path / "other.yaml", {
        "full_configuration": {"long_cpu": {"set": {"pretrain.epochs": 12}},
                               "gpu_size": {"set": {"model.hidden": 1150}}}})
    monkeypatch.setattr(pipeline.studies, "OUT", tmp_path)
    monkeypatch.setattr(pipeline.studies, "read_results", lambda read, where="": None)
    accuracy = {"long_cpu": 0.75, "gpu_size": 0.8}
    monkeypatch.setattr(pipeline.studies, "collect", lambda prefix, names, readers=None,
                        baseline="HEAD": {name: fake_metrics(dict.fromkeys(
                            VARIANTS, accuracy[name])) for name in names})
    monkeypatch.setattr(pipeline.studies, "point_readers",
                        lambda prefix, names, baseline: dict.fromkeys(names, lambda path: None))
    report = tmp_path / "full_configuration.csv"
    run_studies_main(monkeypatch, "full-configuration", "--params", str(other), "--report-only")
    first = pd.read_csv(report)
    assert set(first["config"]) == {"long_cpu", "gpu_size"}
    accuracy["long_cpu"] = 0.77  # the rerun's result
    assert run_studies_main(monkeypatch, "full-configuration", "--params", str(other),
                            "--only", "long_cpu") == ["long_cpu"]
    second = pd.read_csv(report)
    assert set(second.loc[second["config"] == "long_cpu", "accuracy"]) == {0.77}
    pd.testing.assert_frame_equal(*(frame[frame["config"] == "gpu_size"].reset_index(drop=True)
                                    for frame in (second, first)))
    markdown = (tmp_path / "full_configuration.md").read_text()
    assert "| gpu_size | 1,000 | 99.0 | rnn_pretrained | 80.00 [79.0, 81.0] |" in markdown
    assert "Kept from the earlier report, not rerun by this command: gpu_size." in markdown
    report.write_text("variant,accuracy\nrnn_pretrained,0.9\n")

    def collect_nothing(*args: object, **kwargs: object) -> dict:
        raise AssertionError("read the experiments before finding the report unreadable")

    monkeypatch.setattr(pipeline.studies, "collect", collect_nothing)
    with pytest.raises(PipelineError, match=r"full_configuration\.csv: lacks the columns "
                                            r"config, ci_low, .*; delete it"):
        queued = run_studies_main(monkeypatch, "full-configuration", "--params", str(other),
                                  "--only", "long_cpu")
        raise AssertionError(f"queued {queued} before finding the report unreadable")
    assert report.read_text() == "variant,accuracy\nrnn_pretrained,0.9\n"


def test_learning_curve_and_ablation_sweeps(tmp_path: Path, tiny_run: TinyRun,
                                            request: pytest.FixtureRequest) -> None:
    studies = {
        "learning_curve": {
            "n8": {"set": {"classifier.train_examples": 8, "classifier.rnn_scratch.epochs": 1}},
        },
        "ablation": {
            "base": {"description": "16 labels", "set": {"classifier.train_examples": 16}},
            "last_pooling": {"description": "last hidden state only",
                             "set": {"classifier.rnn_pretrained.pooling": "last"}},
        },
        "pretraining_budget": {"lm_short": {"set": {"pretrain.epochs": 1}}},
    }
    # the session's tiny run, with these study points: no stage reads `studies`
    root = copy_project(tiny_run.root, tmp_path / "repo")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["studies"] = studies  # replace (not merge into) the real study points
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(run(["dvc", "repro"], cwd=root).stdout) == []
    run(["git", "add", "-A"], cwd=root)
    run(["git", "commit", "-qm", "baseline"], cwd=root, env=GIT_ENV)
    request.addfinalizer(lambda: stop_queue_workers(root))

    out = run([sys.executable, "-m", "pipeline.studies", "learning-curve"], cwd=root)
    assert "Learning curve" in out.stdout
    curve = pd.read_csv(root / "reports/studies/learning_curve.csv")
    full = curve.loc[curve.point == "all", "train_examples"].unique().tolist()
    assert len(full) == 1 and full[0] > 16  # the main run: every labeled example
    assert set(curve.variant) == {*EVALUATED, HYBRID}
    for variant in (*EVALUATED, HYBRID):
        sizes = sorted(curve.loc[curve.variant == variant, "train_examples"])
        assert sizes == [8, full[0]]
    assert ((curve.ci_low <= curve.accuracy) & (curve.accuracy <= curve.ci_high)).all()
    assert (root / "reports/studies/learning_curve.png").stat().st_size > 10_000
    # the paired differences, at both sizes (the full one from the workspace's predictions)
    differences = pd.read_csv(root / "reports/studies/learning_curve_differences.csv")
    assert sorted(differences.train_examples.unique()) == [8, full[0]]
    assert differences.ci_low.notna().all()
    assert ((differences.ci_low <= differences.delta + 1e-6)
            & (differences.delta - 1e-6 <= differences.ci_high)).all()
    shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], cwd=root).stdout
    assert "lc-n8" in shown

    run([sys.executable, "-m", "pipeline.studies", "ablation", "--jobs", "2"], cwd=root)
    ablation = pd.read_csv(root / "reports/studies/ablation.csv")
    base = ablation[ablation.point == "base"]
    assert set(base.variant) == {*EVALUATED, HYBRID} and (base.train_examples == 16).all()
    changed = ablation[ablation.point == "last_pooling"]
    assert changed.variant.tolist() == ["rnn_pretrained", HYBRID]
    assert changed.train_examples.tolist() == [16, 16]  # the base's overrides carried over
    for row in changed.itertuples():  # each compared with the same variant in the base
        in_base = base[base.variant == row.variant].accuracy.item()
        assert row.delta_vs_base == pytest.approx(row.accuracy - in_base)
        assert row.delta_ci_low - 1e-6 <= row.delta_vs_base <= row.delta_ci_high + 1e-6
    assert "last hidden state only" in (root / "reports/studies/ablation.md").read_text()

    # every queued experiment (these ran in temporary copies under .dvc/tmp/exps, the
    # ablation's two at once) logged into the main repository's MLflow store: a parent run
    # per experiment, a child per stage it reran, all tagged with the experiment's name
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("rnn-pretrain-imdb")
    parents = {p.info.run_name: p for p in client.search_runs(
        [experiment.experiment_id], "tags.`pipeline.role` = 'parent'")}
    assert {"pipeline:lc-n8", "pipeline:ablation-base",
            "pipeline:ablation-last_pooling"} <= set(parents)
    ran = {}
    for name in ("pipeline:lc-n8", "pipeline:ablation-base", "pipeline:ablation-last_pooling"):
        parent = parents[name]
        children = client.search_runs(
            [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        ran[name] = {c.info.run_name for c in children}
        assert all(c.data.tags["dvc.exp_name"] == parent.data.tags["dvc.exp_name"]
                   for c in children)
    # fewer labels rerun the classifiers and evaluate; the LM (no labels) is reused
    every = {*(f"clf:{variant}" for variant in EVALUATED), "evaluate"}
    assert ran["pipeline:lc-n8"] == every
    # the two ablation points run at once, and every stage but rnn_pretrained's is the same
    # in both: the one that reaches such a stage second may restore it from DVC's run cache
    # (no run to log, the same outputs; seen in CI, 2026-12-05). Between them, all ran.
    base, changed = ran["pipeline:ablation-base"], ran["pipeline:ablation-last_pooling"]
    assert base <= every and changed <= every and base | changed == every
    assert {"clf:rnn_pretrained", "evaluate"} <= base & changed
    assert not list((root / ".dvc/tmp/exps").rglob("mlflow.db"))

    run([sys.executable, "-m", "pipeline.studies", "pretraining-budget"], cwd=root)
    budget = pd.read_csv(root / "reports/studies/pretraining_budget.csv")
    assert set(budget.config) == {"lm_short", "main run"}
    assert set(budget.variant) == {*EVALUATED, HYBRID}
    # what the experiment reused from the cache (no LM under it) is listed once
    for variant in ("rnn_scratch", "bag_of_embeddings"):
        assert budget.loc[budget.variant == variant, "config"].tolist() == ["main run"]
    by = budget.set_index(["config", "variant"])
    scratch = by.loc[("main run", "rnn_scratch")]
    assert scratch.total_train_seconds == pytest.approx(scratch.train_seconds)
    for config in ("lm_short", "main run"):  # the LM's cost is counted in what starts from it
        pretrained = by.loc[(config, "rnn_pretrained")]
        assert pretrained.total_train_seconds > pretrained.train_seconds
    # a shorter LM: fewer tokens, and the main run's rows are those of the workspace
    assert by.loc[("lm_short", "rnn_pretrained")].lm_tokens < by.loc[
        ("main run", "rnn_pretrained")].lm_tokens
    assert (root / "reports/studies/pretraining_budget.png").stat().st_size > 10_000

    # --report-only rebuilds from what already ran; a study that never ran is an error
    run([sys.executable, "-m", "pipeline.studies", "ablation", "--report-only"], cwd=root)
    params = (root / "params.yaml").read_text().replace("last_pooling", "never_ran")
    (root / "params.yaml").write_text(params)
    failed = run([sys.executable, "-m", "pipeline.studies", "ablation", "--report-only"], cwd=root,
                 check=False)
    assert failed.returncode != 0 and "ablation-never_ran" in failed.stderr


def queue_project(tmp_path: Path, tiny_run: TinyRun, request: pytest.FixtureRequest,
                  monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed copy of the tiny run to queue experiments in, made the working directory
    (as `python -m pipeline.studies` runs), its workers stopped after the test."""
    root = copy_project(tiny_run.root, tmp_path / "repo")
    run(["git", "add", "-A"], cwd=root)
    run(["git", "commit", "--allow-empty", "-qm", "baseline"], cwd=root, env=GIT_ENV)
    request.addfinalizer(lambda: stop_queue_workers(root))
    monkeypatch.chdir(root)
    monkeypatch.setattr(pipeline.studies, "POLL_SECONDS", 1.0)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return root


def test_a_task_left_running_without_a_worker_is_queued_again(
        tmp_path: Path, tiny_run: TinyRun, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """DVC's race, reproduced: a worker takes a task (its message moves from the broker's
    `in` to `processed`) and shuts down before running it, so `dvc queue status` shows the
    task Running with no worker, for ever. `studies` kills it, queues it again and waits."""
    root = queue_project(tmp_path, tiny_run, request, monkeypatch)
    points = {"boe": StudyPoint(set={"classifier.bag_of_embeddings.epochs": 2})}
    queue_point("race", "boe", points["boe"])
    broker = root / ".dvc/tmp/exps/celery/broker"
    [message] = [path for path in (broker / "in").iterdir() if "pidbox" not in path.name]
    shutil.move(message, broker / "processed" / message.name)
    status = run(["dvc", "queue", "status"], cwd=root).stdout
    assert queue_states(status, ["race-boe"]) == {"race-boe": "Running"}
    assert NO_WORKERS in status

    pipeline.studies.wait(points, "race", jobs=1)
    status = run(["dvc", "queue", "status"], cwd=root).stdout
    assert queue_states(status, ["race-boe"]) == {"race-boe": "Success"}
    shown = run(["dvc", "exp", "show", "--no-pager", "--csv"], cwd=root).stdout
    assert "race-boe" in shown


def test_a_queue_listing_that_fails_is_asked_again_not_the_end_of_the_wait(
        tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """DVC writes its task info files (and its broker's messages) in place, so a `dvc queue
    status` that reads one half-written fails; one such failure ended a study's wait
    mid-run (2026-12-08). Reproduced in a one-stage repository with a finished task's info
    file emptied: the wait asks again until the listing works, and gives up, saying what
    to do, only after STATUS_TRIES failures in a row."""
    run(["git", "init", "-q"], cwd=tmp_path)
    run(["dvc", "init", "-q"], cwd=tmp_path)
    (tmp_path / "params.yaml").write_text("greeting: hello\n")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"say": {
        "cmd": "python -c \"import yaml; print(yaml.safe_load(open('params.yaml')))\" > said",
        "params": ["greeting"], "outs": ["said"]}}}))
    run(["dvc", "repro", "-q"], cwd=tmp_path)
    run(["git", "add", "-A"], cwd=tmp_path)
    run(["git", "commit", "-qm", "baseline"], cwd=tmp_path, env=GIT_ENV)
    request.addfinalizer(lambda: stop_queue_workers(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline.studies, "POLL_SECONDS", 1.0)
    points = {"bye": StudyPoint(set={"greeting": "goodbye"})}
    queue_point("torn", "bye", points["bye"])
    pipeline.studies.start_workers(1)
    pipeline.studies.wait(points, "torn", jobs=1)
    [info_file] = (tmp_path / ".dvc/tmp/exps/run").glob("*/*.run")
    written = info_file.read_text()
    info_file.write_text("")  # DVC's rewrite between its truncate and its write
    torn = subprocess.run(["dvc", "queue", "status"], capture_output=True, text=True)
    assert torn.returncode != 0 and "Expecting value" in torn.stderr
    capsys.readouterr()

    restore = threading.Timer(2.5, info_file.write_text, [written])
    restore.start()
    pipeline.studies.wait(points, "torn", jobs=1)  # returns: the point succeeded
    restore.join()
    retried = capsys.readouterr().out
    assert "`dvc queue status` failed (ERROR: unable to read" in retried
    assert "Expecting value: line 1 column 1 (char 0)); asking again" in retried

    info_file.write_text("")  # for good, this time
    monkeypatch.setattr(pipeline.studies, "STATUS_TRIES", 2)
    with pytest.raises(PipelineError, match=r"failed 2 times in a row(.|\n)*--report-only"
                                            r"(.|\n)*Expecting value"):
        pipeline.studies.wait(points, "torn", jobs=1)


def exp_show_group(name: str, state: str, rev: str, pid: int | None = None,
                   root: str | None = None) -> dict:
    """One experiment as `dvc exp show --json` (DVC 3) lists it under its baseline."""
    local = {"root": root, "pid": pid, "returncode": None, "task_id": rev}
    return {"name": name, "executor": {"state": state, "name": "dvc-task", "local": local},
            "revs": [{"rev": rev, "name": name, "data": {}, "error": None}]}


def finished_process_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_only_finished_experiments_are_collected_and_running_tasks_are_told_apart(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After a killed machine, `dvc exp show` lists the task it left "running" (its rev the
    queued snapshot, no results) before the rerun's finished experiment of the same name:
    the reports read the finished one (they said "no results for full-long"). Running tasks
    are told apart by their process: gone (to be cleared) or alive (not to be rerun)."""
    dead_pid = finished_process_pid()
    shown = [{"rev": "workspace", "name": None, "experiments": None},
             {"rev": "b" * 40, "name": "main", "experiments": [
                 exp_show_group("full-long", "running", "d" * 40, dead_pid, "/x/.dvc/tmp/exps/t1"),
                 exp_show_group("full-long", "success", "f" * 40),
                 exp_show_group("full-other", "running", "a" * 40, os.getpid()),
                 exp_show_group("full-gone", "failed", "e" * 40),
                 exp_show_group("full-next", "queued", "c" * 40)]}]
    monkeypatch.setattr(pipeline.studies, "dvc", lambda *args: json.dumps(shown))
    assert pipeline.studies.experiment_revs() == {"main": "b" * 40, "full-long": "f" * 40}
    names = ["full-long", "full-other", "full-gone", "full-next"]
    assert [(task.task, task.name, task.workspace, task.alive)
            for task in pipeline.studies.running_tasks(names)] == [
        ("d" * 40, "full-long", Path("/x/.dvc/tmp/exps/t1"), False),
        ("a" * 40, "full-other", None, True)]


def test_a_point_whose_machine_was_killed_runs_again_when_the_study_is_rerun(
        tmp_path: Path, tiny_run: TinyRun, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Started again while its point runs, a study refuses (it would run the point twice at
    once). Every process of the queued study SIGKILLed mid-stage (the worker, DVC's
    executor, the stage), as a machine that loses power would: DVC then lists the task as
    running for ever. After a commit, the same study again finds that task under the commit
    it was queued from, marks it failed, removes it and its temporary workspace, runs the
    point (restoring what had finished) and finds the new experiment under the commit it
    was queued from, though a commit made meanwhile moved HEAD."""
    root = queue_project(tmp_path, tiny_run, request, monkeypatch)
    points = {"boe": StudyPoint(set={"classifier.bag_of_embeddings.epochs": 2})}
    queue_point("crash", "boe", points["boe"])
    pipeline.studies.start_workers(1)
    wait_for_log(root, "Reproducing experiment")
    [running] = pipeline.studies.running_tasks(["crash-boe"])
    assert running.alive and running.workspace is not None and running.workspace.is_dir()
    with pytest.raises(PipelineError, match=r"still running from an earlier start of this "
                                            r"study: crash-boe \(task "):
        pipeline.studies.queue(points, "crash", jobs=1)  # would run it twice at once
    wait_for_log(root, "Running stage 'train_bag_of_embeddings'")
    killed = [process for process in psutil.process_iter()
              if process.pid != os.getpid() and under(process, root)]
    assert len(killed) >= 3  # the worker, the executor, the stage (and DVC's manager)
    for process in killed:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(killed, timeout=30)
    status = run(["dvc", "queue", "status"], cwd=root).stdout
    assert queue_states(status, ["crash-boe"]) == {"crash-boe": "Running"}  # for ever
    assert [(task.task, task.alive) for task in pipeline.studies.running_tasks(
        ["crash-boe"])] == [(running.task, False)]
    # the user commits before rerunning: HEAD's listing no longer has the dead task, the
    # commit it was queued from (the task's commit's parent, for git) does
    queued_at = run(["git", "rev-parse", "HEAD"], cwd=root).stdout.strip()
    run(["git", "commit", "--allow-empty", "-qm", "after the crash"], cwd=root, env=GIT_ENV)
    assert pipeline.studies.running_tasks(["crash-boe"]) == []
    assert pipeline.studies.queued_from(running.task[:7]) == queued_at

    start_workers = pipeline.studies.start_workers

    def start_workers_then_commit(jobs: int) -> None:  # the user goes on working meanwhile
        start_workers(jobs)
        run(["git", "commit", "--allow-empty", "-qm", "meanwhile"], cwd=root, env=GIT_ENV)

    monkeypatch.setattr(pipeline.studies, "start_workers", start_workers_then_commit)
    baseline = pipeline.studies.queue(points, "crash", jobs=1)
    assert f"task {running.task[:7]} was left running" in capsys.readouterr().out
    assert not running.workspace.exists()
    status = run(["dvc", "queue", "status"], cwd=root).stdout
    assert [state for _, _, state in queue_rows(status, ["crash-boe"])] == ["Success"]
    assert "crash-boe" not in pipeline.studies.experiment_revs()  # HEAD has moved on
    rev = pipeline.studies.experiment_revs(baseline)["crash-boe"]
    metrics = json.loads(run(["git", "show", f"{rev}:reports/metrics.json"], cwd=root).stdout)
    assert "bag_of_embeddings" in metrics["classifiers"]


def wait_for_log(root: Path, line: str) -> None:
    """Until the queued task's log (DVC's executor output) says ``line``."""
    started = time.monotonic()
    while not any(line in log.read_text()
                  for log in (root / ".dvc/tmp/exps/run").glob("*/*.out")):
        assert time.monotonic() - started < 120, f"the queued point never printed {line!r}"
        time.sleep(0.05)


def under(process: psutil.Process, root: Path) -> bool:
    with contextlib.suppress(psutil.Error):
        return Path(process.cwd()).is_relative_to(root)
    return False


def test_a_study_without_a_commit_to_queue_from_is_one_line(tmp_path: Path) -> None:
    """DVC experiments need a commit: a study outside git, or in a repository without a
    commit, says so before touching DVC, not with a traceback."""
    for repository in (False, True):
        if repository:
            run(["git", "init", "-q"], cwd=tmp_path)
        done = subprocess.run([sys.executable, "-m", "pipeline.studies", "ablation", "--only",
                               "base", "--params", str(PARAMS)], cwd=tmp_path,
                              capture_output=True, text=True,
                              env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])})
        assert done.returncode == 1, done.stderr
        assert "studies run in a git repository with a commit" in done.stdout + done.stderr
        assert "Traceback" not in done.stderr


def test_a_running_task_without_a_known_process_is_not_queued_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dvc queue status` lists a running task whose process no `dvc exp show` gives (here
    its commit is not in git): running while a worker is at work, it counts as alive."""
    run(["git", "init", "-q"], cwd=tmp_path)  # queue's own git and dvc calls land here
    run(["git", "commit", "--allow-empty", "-qm", "baseline"], cwd=tmp_path, env=GIT_ENV)
    monkeypatch.chdir(tmp_path)
    status = ORPHANED_STATUS.replace("Worker status: 0 active", "Worker status: 1 active")
    calls: list[tuple[str, ...]] = []

    def fake_dvc(*args: str) -> str:
        calls.append(args)
        return "[]" if args[:2] == ("exp", "show") else status

    monkeypatch.setattr(pipeline.studies, "dvc", fake_dvc)
    points = {"lm_short": StudyPoint(set={"pretrain.epochs": 1})}
    with pytest.raises(PipelineError, match=r"still running from an earlier start of this "
                                            r"study: budget-lm_short \(task 182b67f, no "
                                            r"process known\)"):
        pipeline.studies.queue(points, "budget", jobs=1)
    assert ("exp", "run", "--queue") not in {args[:3] for args in calls}  # nothing queued
    monkeypatch.setattr(pipeline.studies, "queue_point", lambda *args: calls.append(args))
    status = ORPHANED_STATUS  # no worker: a task left by a killed one; the rerun goes ahead
    monkeypatch.setattr(pipeline.studies, "start_workers", lambda jobs: None)
    monkeypatch.setattr(pipeline.studies, "wait", lambda *args: None)
    assert pipeline.studies.queue(points, "budget", jobs=1)  # the commit queued from
    assert ("budget", "lm_short", points["lm_short"]) in calls
