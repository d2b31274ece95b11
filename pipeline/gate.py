"""Regression gates: hold reports/metrics.json to params.yaml's ``gate:`` section.

Scheduled CI reruns the pipeline and runs this afterwards, so a regression fails the job
instead of slipping into a dashboard nobody reads. Checks:

- every variant in ``gate.min_test_accuracy`` reaches its floor (``quick_min_test_accuracy``
  on a capped run, one with any ``prepare.max_*`` set);
- no variant loses more than ``gate.max_drop_vs_accepted`` on ``gate.drop_metrics`` against
  the accepted results: reports/metrics.json committed at ``--accepted-rev`` (default main)
  or the file ``--accepted``. Results on other data than the accepted ones are not compared
  number by number: a full run on different data fails, a capped run skips the comparison;
  a metric undefined (NaN) in both runs is skipped, NaN against a number fails;
- rnn_pretrained beats bag_of_embeddings by ``gate.min_pretrained_gain`` (full runs only).

Exit status: 0 every gate passed, 1 a gate failed, 2 the gates could not be checked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import GateParams, Params, load_params
from pipeline.errors import PipelineError

PRETRAINED = "rnn_pretrained"
BASELINE = "bag_of_embeddings"
CAPS = ("max_train", "max_unlabeled", "max_test")
EXIT_FAILED = 1
EXIT_ERROR = 2
DASH = "—"


@dataclass(frozen=True)
class Check:
    """One row of the report; values are preformatted so text and Markdown agree."""

    variant: str
    metric: str
    value: str
    accepted: str
    limit: str
    status: str  # PASS | FAIL | SKIP
    note: str = ""


@dataclass(frozen=True)
class Accepted:
    """The accepted results: ``metrics`` is None when the revision has none committed yet."""

    source: str
    metrics: dict | None


@dataclass
class Report:
    source: str
    profile: str
    accepted: str
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "FAIL"]

    @property
    def verdict(self) -> str:
        return "FAIL" if self.failed else "PASS"

    def summary(self) -> str:
        if self.failed:
            return f"{len(self.failed)} of {len(self.checks)} checks failed"
        if not any(c.status == "PASS" for c in self.checks):
            return "no gate was checked: set some in params.yaml's gate section"
        return f"all {sum(c.status == 'PASS' for c in self.checks)} checks passed"

    def notes(self) -> list[str]:
        return [f"{c.variant} {c.metric}: {c.note}" for c in self.checks if c.note]

    def text(self) -> str:
        header = ("variant", "metric", "value", "accepted", "limit", "status")
        rows = [header] + [(c.variant, c.metric, c.value, c.accepted, c.limit, c.status)
                           for c in self.checks]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [f"Regression gates: {self.source} ({self.profile} run) "
                 f"vs accepted {self.accepted}", ""]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                  for row in rows]
        if self.notes():
            lines += ["", "Notes:"] + [f"  - {note}" for note in self.notes()]
        lines += ["", f"Result: {self.verdict} ({self.summary()})"]
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        lines = [f"## Regression gates: {self.verdict}", "",
                 f"`{self.source}` ({self.profile} run) vs accepted `{self.accepted}`: "
                 f"{self.summary()}.", "",
                 "| variant | metric | value | accepted | limit | status |",
                 "|---|---|---|---|---|---|"]
        for c in self.checks:
            status = f"**{c.status}**" if c.status == "FAIL" else c.status
            lines.append(f"| {c.variant} | {c.metric} | {c.value} | {c.accepted} | "
                         f"{c.limit.replace('>=', '≥')} | {status} |")
        if self.notes():
            lines += [""] + [f"- {note}" for note in self.notes()]
        return "\n".join(lines) + "\n\n"


def parse_metrics(text: str, source: str) -> dict:
    """Parse metrics JSON; the evaluate stage may write NaN (ROC-AUC on one class), so allow it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("classifiers"), dict):
        raise PipelineError(f"{source}: expected an object with a 'classifiers' mapping "
                            "(the schema written by the evaluate stage)")
    return data


def read_metrics(path: Path, what: str) -> dict:
    if not path.is_file():
        raise PipelineError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read {what} {path}: {exc}") from None
    return parse_metrics(text, str(path))


def git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise PipelineError("git is not installed: pass --accepted PATH or --no-accepted "
                            "instead of --accepted-rev") from None


def accepted_at_rev(rev: str, metrics_path: Path) -> Accepted:
    """Read the metrics file as committed at ``rev`` (the same path, relative to the repo)."""
    here = metrics_path.resolve().parent
    top = git(["rev-parse", "--show-toplevel"], here)
    if top.returncode != 0:
        raise PipelineError(f"--accepted-rev needs a git repository and {metrics_path} is not in "
                            "one: pass --accepted PATH or --no-accepted")
    root = Path(top.stdout.strip()).resolve()
    try:
        relative = metrics_path.resolve().relative_to(root).as_posix()
    except ValueError:
        raise PipelineError(f"{metrics_path} is outside the git repository {root}") from None
    source = f"{rev}:{relative}"
    if git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root).returncode != 0:
        raise PipelineError(f"git revision {rev!r} not found in {root} "
                            "(a shallow CI checkout must fetch it first, e.g. "
                            "git fetch origin main)")
    if git(["cat-file", "-e", source], root).returncode != 0:
        return Accepted(source, None)
    shown = git(["show", source], root)
    if shown.returncode != 0:
        raise PipelineError(f"git show {source} failed: {shown.stderr.strip()}")
    return Accepted(source, parse_metrics(shown.stdout, source))


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages about hand-edited files."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def metric(data: dict, variant: str, name: str, source: str) -> float:
    """One test metric of one variant, or a PipelineError naming exactly what is wrong.

    NaN is allowed (the evaluate stage writes it for ROC-AUC on one class); anything else
    outside [0, 1] cannot be an accuracy, F1 or AUC, so the file is malformed."""
    classifiers = data["classifiers"]
    if variant not in classifiers:
        present = ", ".join(sorted(classifiers)) or "none"
        raise PipelineError(f"{source}: variant {variant!r} is missing (present: {present})")
    entry = classifiers[variant]
    if not isinstance(entry, dict):
        raise PipelineError(f"{source}: classifiers.{variant} is not an object "
                            f"(got {json_type(entry)})")
    test = entry.get("test")
    if test is not None and not isinstance(test, dict):
        raise PipelineError(f"{source}: classifiers.{variant}.test is not an object "
                            f"(got {json_type(test)})")
    value = None if test is None else test.get(name)
    key = f"classifiers.{variant}.test.{name}"
    if value is None:
        raise PipelineError(f"{source}: {key} is missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PipelineError(f"{source}: {key} must be a number, got {value!r}")
    value = float(value)
    if not math.isnan(value) and not 0.0 <= value <= 1.0:
        raise PipelineError(f"{source}: {key} must be a fraction between 0 and 1, got {value!r}")
    return value


def dataset(data: dict, source: str) -> dict:
    info = data.get("dataset")
    if not isinstance(info, dict):
        raise PipelineError(f"{source}: the 'dataset' section is missing")
    return info


def describe(info: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in info.items() if key != "name")


def fmt(value: float, signed: bool = False) -> str:
    return "nan" if math.isnan(value) else (f"{value:+.4f}" if signed else f"{value:.4f}")


def at_least(value: float, limit: float) -> str:
    """PASS when value >= limit, tolerating float noise; NaN never passes."""
    return "PASS" if value >= limit - 1e-9 else "FAIL"


def floor_checks(current: dict, floors: dict[str, float], source: str) -> list[Check]:
    checks = []
    for variant, floor in floors.items():
        value = metric(current, variant, "accuracy", source)
        checks.append(Check(variant, "accuracy", fmt(value), DASH, f">= {floor:.4f}",
                            at_least(value, floor)))
    return checks


def drop_checks(current: dict, accepted: Accepted | None, gate: GateParams, quick: bool,
                source: str) -> list[Check]:
    label = f"vs accepted (max drop {gate.max_drop_vs_accepted:.4f})"
    if accepted is None:
        return [Check("(all)", label, DASH, DASH, DASH, "SKIP", "not compared (--no-accepted)")]
    if accepted.metrics is None:
        return [Check("(all)", label, DASH, DASH, DASH, "SKIP",
                      f"no accepted results at {accepted.source} yet: accept a run to enable "
                      "this check (see README)")]
    ours, theirs = dataset(current, source), dataset(accepted.metrics, accepted.source)
    if ours != theirs:
        if quick:
            return [Check("(all)", label, DASH, DASH, DASH, "SKIP",
                          "capped run: its data differ from the accepted results', so the "
                          "numbers are not comparable")]
        return [Check("(all)", "dataset", describe(ours), describe(theirs), "same data", "FAIL",
                      "a full run on other data than the accepted results: if intended, "
                      "review and accept the new results (see README)")]
    checks = []
    for variant in sorted(set(accepted.metrics["classifiers"]) | set(current["classifiers"])):
        if variant not in accepted.metrics["classifiers"]:
            checks.append(Check(variant, label, DASH, DASH, DASH, "SKIP",
                                "new variant: no accepted result to compare with"))
            continue
        for name in gate.drop_metrics:
            value = metric(current, variant, name, source)
            before = metric(accepted.metrics, variant, name, accepted.source)
            if math.isnan(value) and math.isnan(before):
                # e.g. ROC-AUC on a test set without one of the classes: nothing regressed
                checks.append(Check(variant, f"{name} vs accepted", fmt(value), fmt(before),
                                    DASH, "SKIP", "not defined in either run (NaN in both, "
                                    "e.g. ROC-AUC on a test set lacking a class)"))
                continue
            limit = before - gate.max_drop_vs_accepted
            checks.append(Check(variant, f"{name} vs accepted", fmt(value), fmt(before),
                                f">= {fmt(limit)}", at_least(value, limit)))
    return checks


def gain_check(current: dict, accepted: Accepted | None, minimum: float | None, quick: bool,
               source: str) -> list[Check]:
    if minimum is None:
        return []
    label = f"accuracy gain vs {BASELINE}"
    if quick:
        return [Check(PRETRAINED, label, DASH, DASH, f">= {minimum:+.4f}", "SKIP",
                      "checked on full runs only")]
    gain = (metric(current, PRETRAINED, "accuracy", source)
            - metric(current, BASELINE, "accuracy", source))
    before = DASH
    if accepted is not None and accepted.metrics is not None:
        try:
            before = fmt(metric(accepted.metrics, PRETRAINED, "accuracy", accepted.source)
                         - metric(accepted.metrics, BASELINE, "accuracy", accepted.source),
                         signed=True)
        except PipelineError:
            before = DASH  # shown for context only; the gate itself is absolute
    return [Check(PRETRAINED, label, fmt(gain, signed=True), before, f">= {minimum:+.4f}",
                  at_least(gain, minimum))]


def is_quick(params: Params) -> bool:
    """A capped run (any prepare.max_*), as the evaluate stage labels it in comparison.md."""
    return any(getattr(params.prepare, cap) is not None for cap in CAPS)


def check(args: argparse.Namespace) -> Report:
    params = load_params(args.params)
    metrics_path = Path(args.metrics)
    current = read_metrics(metrics_path, "metrics file")
    source = str(metrics_path)
    if args.no_accepted:
        accepted = None
    elif args.accepted:
        path = Path(args.accepted)
        accepted = Accepted(str(path), read_metrics(path, "accepted metrics file"))
    else:
        accepted = accepted_at_rev(args.accepted_rev, metrics_path)
    quick = is_quick(params)
    gate = params.gate
    floors = gate.quick_min_test_accuracy if quick else gate.min_test_accuracy
    report = Report(source, "quick" if quick else "full",
                    "(none)" if accepted is None else accepted.source)
    report.checks += floor_checks(current, floors, source)
    report.checks += drop_checks(current, accepted, gate, quick, source)
    report.checks += gain_check(current, accepted, gate.min_pretrained_gain, quick, source)
    return report


def append_markdown(path: str, text: str) -> None:
    """Append, as $GITHUB_STEP_SUMMARY expects (other steps write to the same file)."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise PipelineError(f"could not write {path}: {exc.strerror or exc}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.gate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", default="reports/metrics.json",
                        help="results to check (default: %(default)s)")
    parser.add_argument("--params", default="params.yaml",
                        help="settings holding the gate section (default: %(default)s)")
    accepted = parser.add_mutually_exclusive_group()
    accepted.add_argument("--accepted", metavar="PATH", help="accepted results, as a file")
    accepted.add_argument("--accepted-rev", metavar="REV", default="main",
                          help="git revision whose committed metrics file holds the accepted "
                               "results (default: %(default)s)")
    accepted.add_argument("--no-accepted", action="store_true",
                          help="check the absolute gates only")
    parser.add_argument("--markdown", metavar="PATH",
                        help="also append the report as Markdown (e.g. $GITHUB_STEP_SUMMARY)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Check the gates; bad inputs are one clear line (no traceback), like run_stage's."""
    args = parse_args(argv)
    try:
        report = check(args)
        print(report.text(), end="")
        if args.markdown:
            append_markdown(args.markdown, report.markdown())
    except PipelineError as exc:
        print(f"[gate] error: {exc}", file=sys.stderr)
        if args.markdown:
            with contextlib.suppress(PipelineError):  # the error above is the one to report
                append_markdown(args.markdown,
                                f"## Regression gates: ERROR\n\n```\n{exc}\n```\n\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\n[gate] interrupted", file=sys.stderr)
        return 130
    return EXIT_FAILED if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
