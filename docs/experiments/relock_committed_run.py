"""Keep dvc.lock true to the committed run after a change that does not alter its results.

The repository commits one whole default run: dvc.lock and the reports it hashes. A later
change to code a stage depends on (a refactor, a new param whose default keeps the old
behaviour) leaves that run's hashes stale: ``dvc status`` calls the stage changed, and
tests/test_committed_run.py fails. Rerunning the whole default (25-47 minutes on two CPU
cores) is one fix; when the change leaves every result as it was, this script is the other:

    python docs/experiments/relock_committed_run.py compare --since <commit>
    python docs/experiments/relock_committed_run.py record

``compare`` runs ``dvc repro`` on the tests' tiny dataset with the code and params of
``--since`` (the last commit dvc.lock was true to: the committed run's, or the last
relock's) and with this working tree's, then compares every DVC output of the two runs:
data, models and predictions byte for byte, JSON reports and CSV curves field by field
except the wall-clock ones and MLflow run ids, the comparison tables but their training-time
columns, plots but the accuracy-vs-training-time one (README: Reliability, Reproducible; the
same rules as tests/test_reproducibility.py, from tests/run_outputs.py). It exits 1, naming
each difference, unless there is none. ``record`` then re-records in dvc.lock the
hashes of the git-tracked files the current stages depend on or write, and the params
sections' keys that params.yaml added, at any depth (a recorded value that changed is an
error: that needs a new run, as does a changed command, which it leaves), and drops the
entries of stages dvc.yaml no longer has. Where a report's
format changed (a new column), rewrite the committed report as the new code would have
written it for that run before ``record``, and say so in the commit.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.conftest import TINY_OVERRIDES, make_project, merge, sha256  # noqa: E402
from tests.run_outputs import lock_hashes, same_output  # noqa: E402
from tests.tiny_imdb import build_archive  # noqa: E402


def tiny_run(code: Path, dest: Path, archive: Path) -> None:
    """``dvc repro`` of ``code``'s pipeline and params on the tiny dataset, in ``dest``."""
    # the default's directions, unlike the tests' tiny run: its stages are the ones locked
    params = merge(yaml.safe_load((code / "params.yaml").read_text()),
                   {key: value for key, value in TINY_OVERRIDES.items() if key != "ensemble"})
    params["fetch"]["mirrors"] = {"imdb": {archive.name: {"path": str(archive),
                                                          "sha256": sha256(archive)}}}
    make_project(dest, params, code)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{dest / 'mlflow.db'}"}
    result = subprocess.run(["dvc", "repro"], cwd=dest, env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        sys.exit(f"dvc repro failed in {dest}:\n{result.stdout[-3000:]}\n"
                 f"{result.stderr[-3000:]}")


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def compare(since: str) -> int:
    with tempfile.TemporaryDirectory(prefix="relock-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        archive = build_archive(root / "aclImdb_v1.tar.gz")
        old_tree = root / "old_tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach",
                        str(old_tree), since], check=True)
        try:
            tiny_run(old_tree, root / "old", archive)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(old_tree)], check=True)
        tiny_run(REPO, root / "new", archive)
        old_outs, new_outs = lock_hashes(root / "old"), lock_hashes(root / "new")
        differences = [f"{path}: only in one run" for path in set(old_outs) ^ set(new_outs)]
        for out in sorted(set(old_outs) & set(new_outs)):
            old_files = [p.relative_to(root / "old") for p in files_under(root / "old" / out)]
            new_files = [p.relative_to(root / "new") for p in files_under(root / "new" / out)]
            if old_files != new_files:
                differences.append(f"{out}: other files")
                continue
            differences += [f"{name}: differs" for name in old_files
                            if not same_output(str(name), root / "old" / name,
                                               root / "new" / name)]
    for line in differences:
        print(line)
    print(f"{len(differences)} difference(s) between {since} and this working tree, wall "
          f"clock and MLflow run ids aside")
    return 1 if differences else 0


def add_new_keys(recorded: object, now: object, where: str, changes: list[str],
                 stage: str) -> list[str]:
    """Adds to ``recorded`` (a stage's params in dvc.lock) the keys params.yaml has added
    since, at any depth; returns the params whose recorded value differs."""
    if not (isinstance(recorded, dict) and isinstance(now, dict)):
        return [] if recorded == now else [where]
    changed = [param for key in recorded for param in
               (add_new_keys(recorded[key], now[key], f"{where}.{key}", changes, stage)
                if key in now else [f"{where}.{key}"])]
    for key in [key for key in now if key not in recorded]:
        recorded[key] = now[key]
        changes.append(f"{stage}: params {where}.{key} = {now[key]!r}")
    return changed


def record() -> int:
    tracked = set(subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True,
                                 text=True, check=True).stdout.split())
    current = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    from dvc.utils.serialize import modify_yaml  # DVC's own round-trip writer for its files

    changes = []
    with modify_yaml(REPO / "dvc.lock") as lock:
        for stale in [name for name in lock["stages"] if name not in current]:
            del lock["stages"][stale]  # DVC keeps a stage's entry after dvc.yaml drops it
            changes.append(f"{stale}: dropped (not in dvc.yaml)")
        for name, stage in lock["stages"].items():
            for entry in [*stage.get("deps", []), *stage.get("outs", [])]:
                if entry["path"] not in tracked:
                    continue
                data = (REPO / entry["path"]).read_bytes()
                md5 = hashlib.md5(data).hexdigest()
                if entry["md5"] != md5:
                    entry["md5"], entry["size"] = md5, len(data)
                    changes.append(f"{name}: {entry['path']}")
            for section, recorded in stage.get("params", {}).get("params.yaml", {}).items():
                now = params
                for key in section.split("."):
                    now = now[key]
                changed = add_new_keys(recorded, now, section, changes, name)
                if changed:
                    sys.exit(f"{name}: params {', '.join(changed)} changed since the "
                             "committed run: that needs a new run, not a relock")
    for line in changes:
        print(line)
    print(f"{len(changes)} change(s) recorded in dvc.lock")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("compare").add_argument("--since", required=True,
                                                help="the commit of the committed run")
    commands.add_parser("record")
    args = parser.parse_args()
    sys.exit(compare(args.since) if args.command == "compare" else record())


if __name__ == "__main__":
    main()
