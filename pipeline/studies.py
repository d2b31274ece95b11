"""Studies over the pipeline: DVC experiment sweeps and the reports they produce.

* ``learning-curve`` — one experiment per number of labeled training examples
  (``classifier.train_examples``; pretraining still reads all the text), then
  reports/studies/learning_curve.{csv,md,png}: test accuracy vs labeled examples,
  one line per variant, with 95% bootstrap intervals, and
  learning_curve_differences.csv: rnn_pretrained against rnn_scratch (what pretraining is
  worth) and the baselines at each size.
* ``ablation`` — one experiment per technique switched off (or on), on the same data
  and seed, then reports/studies/ablation.{csv,md}: points each technique is worth.
* ``pretraining-budget`` — one experiment per pretraining length (or any other cost
  setting), plus the main run, then reports/studies/pretraining_budget.{csv,md,png}:
  test accuracy vs training time (classifier + its language models) per variant.
* ``full-configuration`` — the same for the largest configurations: two for long CPU
  runs, one the size of AWD-LSTM for a GPU (reports/studies/full_configuration.{csv,md,png}).

All are read from params.yaml's ``studies`` section, queued with ``dvc exp run
--queue`` (so each run lands in MLflow under its experiment name, like any other
``dvc exp run``), run by ``dvc queue start``, and collected from ``dvc exp show``.
``--report-only`` rebuilds the reports from experiments that already ran (those queued from
HEAD, or from ``--rev COMMIT``; a run's own reports read the commit it queued from, however
HEAD moved meanwhile). Differences
between two models carry paired 95% intervals: both runs' test predictions resampled
together, as evaluate does.

    python -m pipeline.studies learning-curve
    python -m pipeline.studies ablation --jobs 1
    python -m pipeline.studies pretraining-budget
    python -m pipeline.studies full-configuration   # days on a CPU: its AWD-LSTM-sized point

``--set KEY=VALUE`` adds a setting to ``studies.common`` for one run of a study (a point's
own settings still win), and ``--name NAME`` names that run's experiments ``NAME-<point>``
and its reports ``reports/studies/NAME.*``, so a variant of a study (say the ablation on a
longer language model) sits next to the committed one instead of replacing it:

    python -m pipeline.studies ablation --set pretrain.epochs=12 --name ablation_lm12

``--only POINT`` (repeatable) runs and reports only the points named, e.g. the full
configuration's long CPU run without its GPU-sized one:

    python -m pipeline.studies full-configuration --only long_cpu
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import yaml

from pipeline.config import Params, StudyPoint, load_params, with_overrides
from pipeline.errors import PipelineError, run_stage
from pipeline.io import atomic_path, missing_keys
from pipeline.metrics import bootstrap_indices, difference_interval

OUT = Path("reports/studies")
# cost studies: params.yaml key (the CLI name with "-" for "_") -> (experiment name prefix,
# report title)
COST_STUDIES = {"pretraining_budget": ("budget", "Pretraining budget"),
                "full_configuration": ("full", "Full configuration")}
# study (params.yaml key) -> experiment name prefix: each point runs as <prefix>-<point>
PREFIXES = {"learning_curve": "lc", "ablation": "ablation",
            **{study: prefix for study, (prefix, _) in COST_STUDIES.items()}}
METRICS = "reports/metrics.json"
ENSEMBLE = "reports/ensemble.json"
SELF_TRAINING = "reports/self_training.json"
PREDICTIONS = "reports/plots/predictions_{variant}.csv"  # evaluate's, per test example
WORKSPACE = "the workspace"  # read_results' ``where`` for the main run's files
# what the reports read from each run's JSON (dotted paths), so a report from an older
# version or edited by hand is named instead of a KeyError halfway through a report
METRICS_KEYS = ("classifiers", "lm.tokens", "lm.valid_perplexity")
ENSEMBLE_KEYS = ("classifiers",)
CLASSIFIER_KEYS = ("test.accuracy", "test.accuracy_ci95", "train_examples", "train_seconds")
Reader = Callable[[str], str | None]  # a run's file (repo-relative path) -> its text, or None
# experiment names DVC takes: git ref names (git-check-ref-format) without "/"; narrower
# than git's rule (ASCII letters, digits, ".", "_", "-"), so whatever passes here passes there
EXP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Names:
    """What one run of a study is called: its experiments ``<prefix>-<point>``, its reports
    ``reports/studies/<stem>.*``, the command that made them (the reports quote it), and the
    commit they were queued from (``dvc exp show --rev``): HEAD may have moved on since."""

    prefix: str
    stem: str
    command: str
    baseline: str = "HEAD"

    @classmethod
    def default(cls, study: str) -> Names:
        return cls(PREFIXES[study], study, f"python -m pipeline.studies {cli_name(study)}")


def cli_name(study: str) -> str:
    return study.replace("_", "-")


def dvc(*args: str) -> str:
    result = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"dvc {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def start_workers(jobs: int) -> None:
    """``dvc queue start``, with its output in a file: it forks a manager per worker that
    keeps the caller's stdout open until the worker exits, so a pipe here would block until
    the whole queue has run (and for ever if a worker hangs)."""
    with tempfile.TemporaryFile("w+") as log:
        result = subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.seek(0)
        if result.returncode != 0:
            raise PipelineError(f"dvc queue start failed:\n{log.read()[-2000:]}")


def overrides(point: StudyPoint) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in point.set.items()]


def check_exp_name(name: str) -> bool:
    """Whether DVC takes ``name`` as an experiment name (``dvc exp run -n``)."""
    return (EXP_NAME.fullmatch(name) is not None and ".." not in name
            and not name.endswith((".lock", ".")))


def ablation_base(points: dict[str, StudyPoint]) -> str:
    """The ablation's base: its first point, which every other changes one thing from."""
    return next(iter(points))


def study_points(params: Params, study: str, source: str = "params.yaml"
                 ) -> dict[str, StudyPoint]:
    """A study's points with everything each sets: ``studies.common``, then (ablation
    only) the base point's overrides, then the point's own, later ones winning. Every
    point is checked here, before anything is queued; ``source`` names the settings file."""
    points: dict[str, StudyPoint] = getattr(params.studies, study)
    if not points:
        raise PipelineError(f"{source} has no points in studies.{study}")
    for name in points:  # DVC would refuse it after the points before it were queued
        if not check_exp_name(f"{PREFIXES[study]}-{name}"):
            raise PipelineError(
                f"{source} studies.{study}.{name}: the experiment name "
                f"{PREFIXES[study]}-{name} is not one DVC takes: use letters, digits, '.', "
                "'_' and '-' (no spaces, no '..', not ending in '.' or '.lock')")
    base = points[ablation_base(points)].set if study == "ablation" else {}
    merged = {name: StudyPoint(set=params.studies.common | base | point.set,
                               description=point.description)
              for name, point in points.items()}
    for name, point in merged.items():  # a misspelt key fails now, not an hour into the queue
        with_overrides(params, point.set, f"{source} studies.{study}.{name}")
    return merged


def queue_point(prefix: str, name: str, point: StudyPoint) -> None:
    args = ["exp", "run", "--queue", "-n", f"{prefix}-{name}"]
    for item in overrides(point):
        args += ["-S", item]
    dvc(*args)
    print(f"[studies] queued {prefix}-{name}: {' '.join(overrides(point)) or '(defaults)'}")


@dataclass(frozen=True)
class RunningTask:
    """A task ``dvc exp show`` lists as running, with the process DVC recorded running it."""

    task: str
    name: str
    pid: int
    workspace: Path | None  # its temporary copy of the repository

    @property
    def alive(self) -> bool:
        return psutil.pid_exists(self.pid)


def queued_from(task: str) -> str | None:
    """The commit a queued task was queued from, or None when git no longer has the task's
    commit. DVC queues an experiment as a commit on top of that one and names the task after
    it (``dvc queue status`` shows the first 7 hex digits)."""
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{task}^1"],
                           capture_output=True, text=True)
    return found.stdout.strip() or None


def running_tasks(names: Collection[str], baselines: Collection[str] = ("HEAD",)
                  ) -> list[RunningTask]:
    """``names``' tasks that DVC lists as running under ``baselines`` (the commits they were
    queued from: ``dvc exp show`` lists a task under its own; ``--all-commits`` took minutes
    in this repository) and that have started (a task a worker took and dropped before
    starting has no process: ``wait`` handles those)."""
    running: dict[str, RunningTask] = {}
    for rev in baselines:
        for baseline in json.loads(dvc("exp", "show", "--json", "--rev", rev)):
            for group in baseline.get("experiments") or []:
                executor = group.get("executor") or {}
                local = executor.get("local") or {}
                pid, task, root = local.get("pid"), local.get("task_id"), local.get("root")
                if (group.get("name") in names and executor.get("state") == "running"
                        and isinstance(pid, int) and task):
                    running[task] = RunningTask(task, group["name"], pid,
                                                Path(root) if root else None)
    return list(running.values())


def clear_abandoned(tasks: Collection[RunningTask]) -> None:
    """Mark failed the tasks a killed machine or worker left "running" (their process is
    gone), drop them from the queue and delete their temporary workspaces (a copy of the
    data and models each). A rerun would never see them end, and ``dvc exp show`` would
    keep listing them (before the rerun's result, under the same name). The stages they had
    finished are in DVC's run cache and the killed one's checkpoint is in the main clone
    (training.Checkpointing), so the rerun picks up where they stopped."""
    exps_tmp = Path(".dvc/tmp/exps").resolve()
    for task in tasks:
        print(f"[studies] {task.name}: task {task.task[:7]} was left running by a process "
              "that no longer exists (a killed machine or worker); marking it failed and "
              "removing it")
        subprocess.run(["dvc", "queue", "kill", task.task], capture_output=True)
        subprocess.run(["dvc", "queue", "remove", task.task], capture_output=True)
        if task.workspace is not None and task.workspace.resolve().parent == exps_tmp:
            shutil.rmtree(task.workspace, ignore_errors=True)


def queue(points: dict[str, StudyPoint], prefix: str, jobs: int) -> str:
    """Queue one DVC experiment per point, run them, wait, and fail if any failed. Returns
    the commit they were queued from: their baseline, however HEAD moves while they run."""
    names = [f"{prefix}-{name}" for name in points]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        raise PipelineError(f"studies run in a git repository with a commit (DVC experiments "
                            f"need one): git rev-parse HEAD said {head.stderr.strip()}")
    baseline = head.stdout.strip()
    # `dvc queue status` lists the tasks of every commit (by short id), without processes;
    # `dvc exp show` has their processes, listed under the commit each was queued from
    status = queue_status()
    listed = [(task, name) for task, name, state in queue_rows(status, names)
              if state == "Running"]
    started = running_tasks(names, {baseline} | {rev for task, _ in listed
                                                 if (rev := queued_from(task))})
    live = [f"{task.name} (task {task.task[:7]}, process {task.pid})"
            for task in started if task.alive]
    # a running one without a known process (not started yet, or its commit gone from git)
    # is taken for alive while a worker is at work
    if NO_WORKERS not in status:
        live += [f"{name} (task {task}, no process known)" for task, name in listed
                 if not any(known.task.startswith(task) for known in started)]
    if live:  # queueing it again would run it twice at once, then report either
        raise PipelineError(
            f"still running from an earlier start of this study: {', '.join(live)}. Wait "
            "for it (`dvc queue logs <name>`; then the report with --report-only, plus "
            "--rev <the commit it was queued from> if HEAD has moved since), or stop it "
            "first (`dvc queue kill <task>`)")
    clear_abandoned([task for task in started if not task.alive])
    # rerunning a study replaces its earlier experiments (and their old queue entries)
    subprocess.run(["dvc", "queue", "remove", *names], capture_output=True)
    for name in names:
        subprocess.run(["dvc", "exp", "remove", name], capture_output=True)
    # rows still listed under these names (a removal that did not take) are not this run's
    stale = {task for task, _, _ in queue_rows(queue_status(), names)}
    for name, point in points.items():
        queue_point(prefix, name, point)
    start_workers(jobs)
    wait(points, prefix, jobs, stale, baseline)
    return baseline


NO_WORKERS = "Worker status: 0 active, 0 idle"
POLL_SECONDS = 10.0  # between two `dvc queue status`
MISSING_POLLS = 10  # listings in a row without one of the study's tasks before giving up
STATUS_TRIES = 6  # `dvc queue status` calls in a row that may fail before giving up


def queue_status() -> str:
    """``dvc queue status``, asked again when it fails: DVC's task info files and its
    broker's message files are written in place, so a listing that reads one half-written
    fails ("Expecting value: line 1 column 1", treeverse/dvc#8014) while the queue is
    fine. One such failure ended a study's wait in the middle of its run (2026-12-08)."""
    failures = 0
    while True:
        try:
            return dvc("queue", "status")
        except PipelineError as error:
            failures += 1
            if failures == STATUS_TRIES:
                raise PipelineError(
                    f"`dvc queue status` failed {STATUS_TRIES} times in a row, "
                    f"{POLL_SECONDS:g} s apart. Experiments already queued, if any, go on "
                    f"running: see `dvc queue status`, and once they are done write the "
                    f"report with --report-only.\n{error}") from None
            lines = str(error).splitlines()
            reason = next((line for line in lines if line.startswith("ERROR")), lines[0])
            print(f"[studies] `dvc queue status` failed ({reason}); asking again")
            time.sleep(POLL_SECONDS)


def queue_rows(status: str, names: list[str]) -> list[tuple[str, str, str]]:
    """``dvc queue status`` output -> (task id, experiment name, state) of ``names``' rows."""
    rows = [line.split() for line in status.splitlines()]
    return [(words[0], words[1], words[-1]) for words in rows
            if len(words) > 1 and words[1] in names]


def queue_states(status: str, names: list[str], stale: Collection[str] = ()
                 ) -> dict[str, str]:
    """{experiment name: state}, leaving out the rows of ``stale`` task ids (killed or from an
    earlier run). A name queued again keeps its old row, so the liveliest state wins
    (Running, Queued, Success, then anything else, e.g. Failed)."""
    rank = {"Running": 0, "Queued": 1, "Success": 2}
    states: dict[str, str] = {}
    for task, name, state in queue_rows(status, names):
        if task in stale:
            continue
        if name not in states or rank.get(state, 3) < rank.get(states[name], 3):
            states[name] = state
    return states


def wait(points: dict[str, StudyPoint], prefix: str, jobs: int,
         stale: Collection[str] = (), baseline: str = "HEAD") -> None:
    """Poll the queue until the study's experiments are done; work round three DVC bugs.
    ``stale``: task ids listed under the study's names that are not this run's;
    ``baseline``: the commit they were queued from."""
    names = [f"{prefix}-{name}" for name in points]
    stale = set(stale)
    restarts, polls_without_workers, polls_orphaned, polls_missing = 0, 0, 0, 0
    while True:
        status = queue_status()
        states = queue_states(status, names, stale)
        # 0. `dvc queue status` scans started tasks, then queued ones, then finished ones: a
        # task that moves on between two scans is missing from that listing, not done.
        missing = [name for name in names if name not in states]
        polls_missing = polls_missing + 1 if missing else 0
        if polls_missing == MISSING_POLLS:
            raise PipelineError(f"{', '.join(missing)} left the queue:\n{status}")
        if not missing and not set(states.values()) & {"Queued", "Running"}:
            break
        running = [(task, name) for task, name, state in queue_rows(status, names)
                   if state == "Running" and task not in stale]
        # 1. DVC's workers can stop with tasks still queued (treeverse/dvc#10562): after
        # three polls in a row with no worker at all (not a slow start), start them again.
        # 2. A worker can take a task and shut down ("empty queue") before running it: the
        # task then shows Running for ever with no worker. After six such polls, unless its
        # process is alive, kill it (DVC marks it failed), drop it, queue it again.
        no_workers = NO_WORKERS in status
        polls_without_workers = polls_without_workers + 1 if no_workers and not running else 0
        polls_orphaned = polls_orphaned + 1 if no_workers and running else 0
        if polls_orphaned == 6:
            # a worker too busy to answer DVC's ping is listed the same way: a task whose
            # process is alive is at work, not orphaned (a fine-tuning stage on both cores
            # was killed for this, 2026-12-08)
            try:
                at_work = [known.task for known in running_tasks(names, [baseline])
                           if known.alive]
            except PipelineError:  # `dvc exp show` fails on a task that never started
                at_work = []  # (its info file was never written): that is the orphan
            running = [(task, name) for task, name in running
                       if not any(known.startswith(task) for known in at_work)]
            polls_orphaned = 6 if running else 0
        if polls_without_workers == 3 or polls_orphaned == 6:
            if restarts == 3:
                raise PipelineError(f"the queue's workers keep stopping early:\n{status}")
            if polls_orphaned == 6:
                for task, name in running:
                    print(f"[studies] {name} shows Running with no worker: queueing it again")
                    subprocess.run(["dvc", "queue", "kill", task], capture_output=True)
                    subprocess.run(["dvc", "queue", "remove", task], capture_output=True)
                    stale.add(task)
                    point = name.removeprefix(f"{prefix}-")
                    queue_point(prefix, point, points[point])
            restarts, polls_without_workers, polls_orphaned = restarts + 1, 0, 0
            start_workers(jobs)
        time.sleep(POLL_SECONDS)
    failed = [f"{name} {state}" for name, state in states.items() if state == "Failed"]
    if failed:
        raise PipelineError("experiments failed (see `dvc queue logs <name>`):\n"
                            + "\n".join(failed))


def experiment_revs(baseline: str = "HEAD") -> dict[str, str]:
    """Experiment name -> commit, for the experiments ``dvc exp show`` lists under
    ``baseline`` (the first listed wins when a name repeats). Queued, running and failed
    tasks are left out: they have no results, and one a killed machine left "running"
    keeps its name."""
    revs: dict[str, str] = {}

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if entry.get("rev") != "workspace" and entry.get("name") and entry.get("rev"):
                revs.setdefault(entry["name"], entry["rev"])
            for group in entry.get("experiments") or []:
                if (group.get("executor") or {}).get("state") in (None, "success"):
                    walk(group.get("revs") or [])

    walk(json.loads(dvc("exp", "show", "--json", "--rev", baseline)))
    return revs


def git_file(rev: str, path: str) -> str | None:
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else None


def workspace_file(path: str) -> str | None:
    return Path(path).read_text(encoding="utf-8") if Path(path).is_file() else None


def parse_report(text: str, path: str, where: str, keys: tuple[str, ...]) -> dict:
    """A run's JSON report, read from ``where`` (an experiment's commit or the workspace):
    like io.read_json, damaged or lacking a key it is a PipelineError naming the file, the
    run and the key, not a traceback."""
    fix = ("delete it and run dvc repro" if where == WORKSPACE
           else "run the study again (without --report-only)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path} of {where} is not valid JSON ({exc}): {fix}") from exc
    missing = missing_keys(data, keys)
    classifiers = data.get("classifiers") if isinstance(data, dict) else None
    if isinstance(classifiers, dict):  # every variant's entry, as rows() reads them
        missing += [f"classifiers.{variant}.{key}" for variant, entry in classifiers.items()
                    for key in missing_keys(entry, CLASSIFIER_KEYS)]
    if missing:
        raise PipelineError(f"{path} of {where} lacks {', '.join(map(repr, missing))}: {fix}")
    return data


def read_results(read: Reader, where: str = WORKSPACE) -> dict | None:
    """metrics.json of one run, plus the results of reports/ensemble.json and
    reports/self_training.json when that run had them switched on (its params.yaml
    ensemble.directions, self_training.teachers); ``where`` names the run (``experiment
    <name>`` or the workspace) in errors."""
    text = read(METRICS)
    if text is None:
        return None
    metrics = parse_report(text, METRICS, where, METRICS_KEYS)
    try:
        params = yaml.safe_load(read("params.yaml") or "{}") or {}
    except yaml.YAMLError as exc:
        raise PipelineError(f"params.yaml of {where} is not valid YAML: {exc}") from exc
    for section, key, path in (("ensemble", "directions", ENSEMBLE),
                               ("self_training", "teachers", SELF_TRAINING)):
        switched_on = isinstance(params, dict) and isinstance(params.get(section), dict) and (
            params[section].get(key))
        extra = read(path) if switched_on else None
        if extra is not None:
            metrics["classifiers"].update(
                parse_report(extra, path, where, ENSEMBLE_KEYS)["classifiers"])
    return metrics


def experiment_label(prefix: str, name: str) -> str:
    """How errors name a point's run: the DVC experiment it ran as."""
    return f"experiment {prefix}-{name}"


def point_readers(prefix: str, names: list[str], baseline: str = "HEAD") -> dict[str, Reader]:
    """Each point's files, read from its experiment's commit (points that never ran are
    left out); ``baseline``: the commit they were queued from."""
    revs = experiment_revs(baseline)
    return {name: partial(git_file, revs[f"{prefix}-{name}"]) for name in names
            if f"{prefix}-{name}" in revs}


def collect(prefix: str, names: list[str], readers: dict[str, Reader] | None = None,
            baseline: str = "HEAD") -> dict[str, dict]:
    """reports/metrics.json of each point's experiment, read from the experiment's commit:
    ``dvc exp show`` drops list-valued metrics such as the confidence intervals."""
    readers = point_readers(prefix, names, baseline) if readers is None else readers
    found: dict[str, dict] = {}
    for name in names:
        if name not in readers:
            continue
        metrics = read_results(readers[name], experiment_label(prefix, name))
        if metrics is not None:
            found[name] = metrics
    missing = [n for n in names if n not in found]
    if missing:
        raise PipelineError(f"no results for {', '.join(f'{prefix}-{n}' for n in missing)}: "
                            f"run the study first (without --report-only)")
    return found


def read_predictions(read: Reader, variants: Collection[str], where: str
                     ) -> dict[str, pd.DataFrame]:
    """Each variant's test predictions (evaluate's ``actual``, ``predicted`` columns, one
    row per test example, in test-set order); a variant whose file the run lacks (a run
    from before evaluate wrote them) is left out, and its differences go without an
    interval. A damaged file is a PipelineError naming it and the run (``where``)."""
    answers = {}
    for variant in variants:
        path = PREDICTIONS.format(variant=variant)
        text = read(path)
        if text is None:
            continue
        try:
            frame = pd.read_csv(io.StringIO(text), dtype=str)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise PipelineError(f"{path} of {where} is not a readable CSV ({exc}): run the "
                                "study again (without --report-only)") from exc
        if not {"actual", "predicted"} <= set(frame.columns) or frame.isna().any().any():
            raise PipelineError(f"{path} of {where} lacks the actual and predicted columns "
                                "or has empty cells: run the study again (without "
                                "--report-only)")
        answers[variant] = frame
    return answers


class PairedDifferences:
    """accuracy(a) - accuracy(b) with its 95% interval over evaluate's resamples of the
    test set (``evaluate.bootstrap_samples`` and ``seed``), so a study's intervals are
    those evaluate would give the two models side by side."""

    def __init__(self, params: Params) -> None:
        self.samples, self.seed = params.evaluate.bootstrap_samples, params.evaluate.seed
        self.indices: dict[int, np.ndarray] = {}

    def __call__(self, a: pd.DataFrame | None, b: pd.DataFrame | None
                 ) -> tuple[float, float] | None:
        """The interval, or None when either run lacks predictions or the two were not
        scored on the same test set (say a point that caps prepare.max_test)."""
        if a is None or b is None or not a["actual"].equals(b["actual"]):
            return None
        n = len(a)
        if n not in self.indices:
            self.indices[n] = bootstrap_indices(n, self.samples, self.seed)
        low, high = difference_interval((a.actual == a.predicted).to_numpy(),
                                        (b.actual == b.predicted).to_numpy(), self.indices[n])
        return low, high


def points_with_ci(delta: float, interval: tuple[float, float] | None) -> str:
    """A difference in points, with its interval when there is one: +1.35 [+1.05, +1.65]."""
    if interval is None:
        return f"{100 * delta:+.2f}"
    return f"{100 * delta:+.2f} [{100 * interval[0]:+.2f}, {100 * interval[1]:+.2f}]"


def rows(metrics: dict) -> Iterator[dict]:
    for variant, entry in metrics["classifiers"].items():
        test = entry["test"]
        yield {"variant": variant, "train_examples": entry["train_examples"],
               "accuracy": test["accuracy"], "ci_low": test["accuracy_ci95"][0],
               "ci_high": test["accuracy_ci95"][1], "train_seconds": entry["train_seconds"],
               "total_train_seconds": entry.get("total_train_seconds", float("nan"))}


def write_table(frame: pd.DataFrame, stem: str, markdown: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with atomic_path(OUT / f"{stem}.csv") as tmp:
        frame.to_csv(tmp, index=False)
    with atomic_path(OUT / f"{stem}.md") as tmp:
        tmp.write_text(markdown, encoding="utf-8")
    print(markdown)


def learning_curve_report(params: Params, source: str = "params.yaml",
                          names: Names | None = None, main_run: bool = True) -> pd.DataFrame:
    """``main_run``: add the workspace's run (dvc repro) as the all-labels point when no point
    has every label; off for a run with --set, whose settings the main run does not share."""
    names = names or Names.default("learning_curve")
    points = study_points(params, "learning_curve", source)
    readers = point_readers(names.prefix, list(points), names.baseline)
    results = collect(names.prefix, list(points), readers)
    table = [row | {"point": name} for name, metrics in results.items() for row in rows(metrics)]
    workspace = read_results(workspace_file) if main_run else None
    if workspace is not None:  # the main run (dvc repro) in the workspace: every label
        sizes = {row["train_examples"] for row in table}
        extra = [row | {"point": "all"} for row in rows(workspace)
                 if row["train_examples"] not in sizes]
        if extra:
            table += extra
            results[WORKSPACE], readers[WORKSPACE] = workspace, workspace_file
    # a point asking for more examples than the train split has is the full run again
    frame = (pd.DataFrame(table).drop_duplicates(["variant", "train_examples"])
             .sort_values(["variant", "train_examples"]))
    variants = list(dict.fromkeys(frame["variant"]))
    lines = ["# Learning curve: test accuracy % vs labeled training examples", "",
             "| labeled examples | " + " | ".join(variants) + " |",
             "|---" * (len(variants) + 1) + "|"]
    for n, row in frame.groupby("train_examples"):
        cells = {r.variant: f"{100 * r.accuracy:.2f} [{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}]"
                 for r in row.itertuples()}
        lines.append(f"| {n:,} | " + " | ".join(cells.get(v, "—") for v in variants) + " |")
    differences = learning_curve_differences(params, results, readers, names.prefix)
    if not differences.empty:
        pairs = list(dict.fromkeys(differences["pair"]))
        lines += ["", "Paired differences in points (95% interval over the same resampled "
                  "test sets as evaluate's; the first is what pretraining is worth):", "",
                  "| labeled examples | " + " | ".join(f"{p}" for p in pairs) + " |",
                  "|---" * (len(pairs) + 1) + "|"]
        for n, row in differences.groupby("train_examples"):
            cells = {r.pair: points_with_ci(r.delta, None if pd.isna(r.ci_low)
                                            else (r.ci_low, r.ci_high))
                     for r in row.itertuples()}
            lines.append(f"| {n:,} | " + " | ".join(cells.get(p, "—") for p in pairs) + " |")
    lines += ["", f"Each row is one `dvc exp run` (`{names.prefix}-<point>`, params in {source} "
              "`studies.learning_curve`); brackets: 95% bootstrap interval over the test set. "
              "The language model is the same for every row (all unlabeled and training text).",
              f"Made by `{names.command}`."]
    write_table(frame, names.stem, "\n".join(lines) + "\n")
    with atomic_path(OUT / f"{names.stem}_differences.csv") as tmp:
        differences.to_csv(tmp, index=False)
    from pipeline import plots

    plots.learning_curve(frame, OUT / f"{names.stem}.png")
    return frame


def learning_curve_differences(params: Params, results: dict[str, dict],
                               readers: dict[str, Reader], prefix: str = "lc") -> pd.DataFrame:
    """Per point, rnn_pretrained against rnn_scratch (what pretraining is worth), the bag
    of embeddings and the n-gram baseline the hybrid uses, paired on the test set."""
    pairs = [("rnn_pretrained", other) for other in
             ("rnn_scratch", "bag_of_embeddings", params.evaluate.hybrid_with) if other]
    paired = PairedDifferences(params)
    table = []
    for name, metrics in results.items():
        accuracy = {row["variant"]: row for row in rows(metrics)}
        answers = read_predictions(readers[name], {v for pair in pairs for v in pair},
                                   WORKSPACE if name == WORKSPACE
                                   else experiment_label(prefix, name))
        for a, b in pairs:
            if a in accuracy and b in accuracy:
                interval = paired(answers.get(a), answers.get(b)) or (np.nan, np.nan)
                table.append({"point": name, "train_examples": accuracy[a]["train_examples"],
                              "pair": f"{a} − {b}",
                              "delta": accuracy[a]["accuracy"] - accuracy[b]["accuracy"],
                              "ci_low": interval[0], "ci_high": interval[1]})
    frame = pd.DataFrame(table, columns=["point", "train_examples", "pair", "delta",
                                         "ci_low", "ci_high"])
    return (frame.drop_duplicates(["train_examples", "pair"])
            .sort_values("train_examples", kind="stable"))


def ablation_report(params: Params, source: str = "params.yaml",
                    names: Names | None = None) -> pd.DataFrame:
    names = names or Names.default("ablation")
    points = study_points(params, "ablation", source)
    readers = point_readers(names.prefix, list(points), names.baseline)
    results = collect(names.prefix, list(points), readers)
    base_name = ablation_base(points)
    base = {r["variant"]: r for r in rows(results[base_name])}

    def changed(variants: Collection[str]) -> list[str]:
        # each ablation changes the pretrained model; baselines come from base
        return [variant for variant in variants if variant.startswith("rnn_pretrained")]

    base_answers = read_predictions(readers[base_name], changed(base),
                                    experiment_label(names.prefix, base_name))
    paired = PairedDifferences(params)
    table = []
    for name, point in points.items():
        variants = changed(results[name]["classifiers"])
        answers = {} if name == base_name else read_predictions(
            readers[name], variants, experiment_label(names.prefix, name))
        for row in rows(results[name]):
            if name != base_name and row["variant"] not in variants:
                continue
            # against the same variant in the base; one the base lacks (a point that
            # switches the ensemble on adds the backward RNN and the ensemble) gets none
            in_base = base.get(row["variant"])
            delta = float("nan") if in_base is None else row["accuracy"] - in_base["accuracy"]
            interval = (None if in_base is None or name == base_name else
                        paired(answers.get(row["variant"]), base_answers.get(row["variant"])))
            low, high = interval or (float("nan"), float("nan"))
            table.append(row | {"point": name, "description": point.description,
                                "delta_vs_base": delta, "delta_ci_low": low,
                                "delta_ci_high": high, "set": " ".join(overrides(point))})
    frame = pd.DataFrame(table)
    lines = [f"# Ablation: test accuracy of rnn_pretrained, one change at a time "
             f"(base: {base_name})", "",
             "| experiment | change | variant | test accuracy % [95% CI] | "
             "Δ vs base (points) [95% CI, paired] |",
             "|---|---|---|---|---|"]
    for r in frame.itertuples():
        interval = None if pd.isna(r.delta_ci_low) else (r.delta_ci_low, r.delta_ci_high)
        delta = "—" if pd.isna(r.delta_vs_base) else points_with_ci(r.delta_vs_base, interval)
        lines.append(f"| {r.point} | {r.description} | {r.variant} | {100 * r.accuracy:.2f} "
                     f"[{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}] | {delta} |")
    lines += ["", f"Every row: the same data split, vocabulary and seed; "
              f"{base['rnn_pretrained']['train_examples']:,} labeled training examples. "
              "Rows other than the base list only the pretrained RNNs (forward, backward, "
              "their ensemble, their averages with an n-gram model), each compared with the "
              "same variant in the base (— where the base has none); the base lists every "
              "variant of the same run (rnn_scratch = no pretraining). Δ intervals are paired: "
              "the two runs' predictions on the same resampled test sets as evaluate's; they "
              "carry the test set's sampling noise, not the seed's.",
              f"Made by `{names.command}` ({source} `studies.ablation`)."]
    write_table(frame, names.stem, "\n".join(lines) + "\n")
    return frame


COST_COLUMNS = ("config", "variant", "accuracy", "ci_low", "ci_high", "total_train_seconds",
                "lm_tokens", "lm_perplexity")


def earlier_rows(stem: str, configs: Collection[str]) -> pd.DataFrame:
    """The rows of ``configs`` in the report reports/studies/<stem>.csv already holds (none
    when there is no such report yet)."""
    path = OUT / f"{stem}.csv"
    if not configs or not path.exists():
        return pd.DataFrame()
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: not a readable report ({error}); delete it to write "
                            "the report afresh") from error
    missing = [column for column in COST_COLUMNS if column not in frame.columns]
    if missing:
        raise PipelineError(f"{path}: lacks the columns {', '.join(missing)}; delete it to "
                            "write the report afresh")
    return frame[frame["config"].isin(configs)]


def cost_report(params: Params, study: str, source: str = "params.yaml",
                names: Names | None = None, kept: pd.DataFrame | None = None
                ) -> pd.DataFrame:
    """Test accuracy vs training time of each point of a cost study (the pretraining budget
    or the full configuration) next to the main run: reports/studies/<stem>.{csv,md,png}.
    ``kept``: the earlier report's rows of the study's other points (a run with --only,
    ``earlier_rows``): they stay in it, marked as not rerun."""
    names = names or Names.default(study)
    points = study_points(params, study, source)
    prefix, title = names.prefix, COST_STUDIES[study][1]
    results: dict[str, dict] = {}
    workspace = read_results(workspace_file)
    if workspace is not None:  # the main run (dvc repro) in the workspace
        results["main run"] = workspace
    results |= collect(prefix, list(points), baseline=names.baseline)
    table = []
    for name, metrics in results.items():
        lm = metrics["lm"]
        for row in rows(metrics):
            table.append(row | {"config": name, "lm_tokens": lm["tokens"],
                                "lm_perplexity": lm["valid_perplexity"]})
    kept = kept if kept is not None else pd.DataFrame()
    # a variant a config did not change (its stage was reused from the cache) is listed once
    frame = (pd.concat([pd.DataFrame(table), kept], ignore_index=True)
             .drop_duplicates(["variant", "accuracy", "total_train_seconds"])
             .sort_values(["variant", "total_train_seconds"]))
    lines = [f"# {title}: test accuracy vs training time", "",
             "| config | LM tokens | LM perplexity | variant | test accuracy % [95% CI] | "
             "training time, with its LM(s) (min) |", "|---|---|---|---|---|---|"]
    for r in frame.sort_values(["lm_tokens", "variant"]).itertuples():
        lines.append(f"| {r.config} | {r.lm_tokens:,} | {r.lm_perplexity:.1f} | {r.variant} | "
                     f"{100 * r.accuracy:.2f} [{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}] | "
                     f"{r.total_train_seconds / 60:.1f} |")
    sets = "; ".join(f"{name}: {' '.join(overrides(point))}" for name, point in points.items())
    lines += ["", f"Configs ({sets}; main run: params.yaml as committed) on the same data "
              "and seed. Training time: the variant's classifier training plus the language "
              "model(s) it starts from, as measured in that run; data preparation (shared, "
              "about 1 minute) and evaluation are not included. Results a config reuses "
              "unchanged from another (cached stages) are listed once.",
              *([f"Kept from the earlier report, not rerun by this command: "
                 f"{', '.join(sorted(set(kept['config'])))}."] if len(kept) else []),
              f"Made by `{names.command}`."]
    write_table(frame, names.stem, "\n".join(lines) + "\n")
    from pipeline import plots

    plots.accuracy_vs_cost(frame, OUT / f"{names.stem}.png")
    return frame


def positive_int(text: str) -> int:
    """--jobs: 0 would queue every point and start no worker (``dvc queue start -j 0``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def setting(text: str) -> tuple[str, object]:
    """--set KEY=VALUE, the value read as YAML like ``dvc exp run -S`` (12 -> int,
    [backward] -> list, true -> bool); whether the key exists is checked by with_common."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"{key}: the value is not valid YAML ({exc})") from None


def run_name(text: str) -> str:
    """--name: it becomes experiment names (<name>-<point>) and report file names."""
    if not check_exp_name(f"{text}-x"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: use letters, digits, '.', '_' and '-' (it names experiments and files)")
    return text


def with_common(params: Params, extra: dict[str, object]) -> Params:
    """``params`` with ``extra`` added to studies.common (the points' own settings still
    win); each key and value is checked as a setting of params.yaml."""
    if not extra:
        return params
    with_overrides(params, extra, "--set")
    studies = params.studies.model_copy(update={"common": params.studies.common | extra})
    return params.model_copy(update={"studies": studies})


def with_only(params: Params, study: str, only: list[str], source: str) -> Params:
    """``params`` with studies.<study> narrowed to the points named in ``only`` (in
    params.yaml's order); the ablation keeps its base, the first point, which every other
    is compared with."""
    if not only:
        return params
    points: dict[str, StudyPoint] = getattr(params.studies, study)
    unknown = [name for name in only if name not in points]
    if unknown:
        raise PipelineError(f"--only {', '.join(unknown)}: no such point in studies.{study} "
                            f"of {source} (its points: {', '.join(points) or 'none'})")
    keep = set(only) | ({ablation_base(points)} if study == "ablation" else set())
    narrowed = {name: point for name, point in points.items() if name in keep}
    studies = params.studies.model_copy(update={study: narrowed})
    return params.model_copy(update={"studies": studies})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=["learning-curve", "ablation",
                                          *(cli_name(key) for key in COST_STUDIES)])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="experiments run at once (at least 1)")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the report from experiments that already ran")
    parser.add_argument("--rev", default="HEAD", metavar="COMMIT",
                        help="with --report-only: the commit the experiments were queued "
                             "from, if HEAD has moved on since (default: HEAD)")
    parser.add_argument("--set", dest="settings", metavar="KEY=VALUE", type=setting,
                        action="append", default=[],
                        help="add a setting to studies.common for this run (repeatable)")
    parser.add_argument("--name", type=run_name, default=None,
                        help="name this run: experiments <name>-<point>, reports "
                             "reports/studies/<name>.* (default: the study's own)")
    parser.add_argument("--only", metavar="POINT", action="append", default=[],
                        help="run and report only this point of the study (repeatable; "
                             "the ablation keeps its base)")
    args = parser.parse_args()
    if args.rev != "HEAD" and not args.report_only:
        parser.error("--rev reads experiments that already ran: use it with --report-only")
    study = args.study.replace("-", "_")
    every_point = with_common(load_params(args.params), dict(args.settings))
    params = with_only(every_point, study, args.only, args.params)
    names = Names.default(study)
    if args.settings or args.name or args.only or args.params != "params.yaml":
        options = ([*(["--params", args.params] if args.params != "params.yaml" else []),
                    *(f"--set={key}={json.dumps(value)}" for key, value in args.settings),
                    *(option for point in args.only for option in ("--only", point)),
                    *(["--name", args.name] if args.name else [])])
        names = Names(args.name or names.prefix, args.name or names.stem,
                      f"{names.command} {shlex.join(options)}")
    # --only on a cost study: its other points keep their rows in the report
    others = [name for name in getattr(every_point.studies, study)
              if args.only and name not in args.only] if study in COST_STUDIES else []
    kept = earlier_rows(names.stem, others)  # read before the queue: if unreadable, fail now
    if args.report_only:
        names = replace(names, baseline=args.rev)
    else:
        baseline = queue(study_points(params, study, args.params), names.prefix, args.jobs)
        names = replace(names, baseline=baseline)
    if study == "learning_curve":
        learning_curve_report(params, args.params, names, main_run=not args.settings)
    elif study == "ablation":
        ablation_report(params, args.params, names)
    else:
        cost_report(params, study, args.params, names, kept=kept)


if __name__ == "__main__":
    run_stage("studies", main)
