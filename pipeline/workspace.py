"""Where the user's repository is, also from a DVC experiment's temporary workspace.

``dvc exp run --queue`` and ``--temp`` run the stages in ``<repo>/.dvc/tmp/exps/...``: a
copy of the committed files (no ignored or untracked ones, nothing outside the repository
at a relative path) that is deleted with the experiment, killed or not. What must outlive
it (MLflow's store, training checkpoints) or lies outside it (a dataset mirror at
``../shared``) is found from the user's repository instead.
"""

from __future__ import annotations

import os
from pathlib import Path


def repo_of_experiment_workspace(path: Path) -> Path | None:
    """The user's repository when ``path`` lies in a DVC experiment's temporary workspace,
    else None."""
    parts = path.resolve().parts
    for i in range(len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return None


def main_repo_root() -> Path:
    """The user's repository (DVC sets ``$DVC_ROOT`` to it, in experiments too)."""
    root = Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()
    return repo_of_experiment_workspace(root) or root


def user_path(path: str | Path) -> Path:
    """A path from params.yaml, relative to the repository root: where it is in this
    repository (an experiment's copy holds the committed files as queued), else in the
    user's own (a mirror outside the repository, an ignored or untracked file)."""
    path = Path(path)
    return path if path.is_absolute() or path.exists() else main_repo_root() / path
