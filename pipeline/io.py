"""Atomic file and directory outputs: a stage either writes all of an output or none of it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TypeVar

from pipeline.errors import PipelineError

T = TypeVar("T")


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; move it onto ``target`` only if the block succeeds.

    Works for a file or a directory written at the yielded path. On any error the
    temporary is removed and an existing ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    staged = tmp / target.name
    try:
        yield staged
        if not staged.exists():
            raise RuntimeError(f"nothing was written for {target}")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(staged, target)
    except OSError as exc:
        named = isinstance(exc.filename, (str, bytes, os.PathLike)) and exc.filename
        culprit = Path(os.fsdecode(exc.filename)).resolve() if named else None
        if culprit is not None and not any(culprit.is_relative_to(ours.resolve())
                                           for ours in (tmp, target)):
            raise  # about another file (e.g. an input being read): run_stage names it
        raise PipelineError(f"could not write {target}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_outputs(*targets: str | Path) -> Iterator[list[Path]]:
    """:func:`atomic_path` for several outputs that appear together: one staged path per
    target, all moved into place only once the block has written every one of them, so an
    error or Ctrl-C part-way through a stage's writes leaves none of its outputs."""
    with ExitStack() as stack:
        staged = [stack.enter_context(atomic_path(target)) for target in targets]
        yield staged
        missing = [str(target) for target, path in zip(targets, staged, strict=True)
                   if not path.exists()]
        if missing:  # checked before any is moved, so none is
            raise RuntimeError(f"nothing was written for {', '.join(missing)}")


def write_json(path: str | Path, data: object) -> None:
    """Write JSON atomically, with sorted keys so identical data gives identical bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def missing_keys(data: object, keys: Iterable[str]) -> list[str]:
    """Those of ``keys`` (dotted paths into nested objects, e.g. ``lm.tokens``) that
    ``data``, parsed JSON, has no value at."""
    def lacks(node: object, dotted: str) -> bool:
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                return True
            node = node[key]
        return False

    return [key for key in keys if lacks(data, key)]


def read_json(path: str | Path, keys: tuple[str, ...] = ()) -> object:
    """A JSON file; with ``keys``, a JSON object that must have each of them (a report
    from an older version, or edited by hand, is named rather than a KeyError)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"missing input file: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path} is not valid JSON: {exc}") from exc
    missing = missing_keys(data, keys)
    if missing:
        raise PipelineError(f"{path} lacks {', '.join(map(repr, missing))}: delete it and "
                            "run the stage that writes it again (dvc repro)")
    return data


def require(path: str | Path, what: str) -> Path:
    """Fail with a clear message when an input produced by an earlier stage is missing."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"missing {what}: {path} (run the earlier stages: dvc repro)")
    return path


def read_input(path: str | Path, what: str, read: Callable[[Path], T]) -> T:
    """``read(path)`` for a file an earlier stage wrote. Missing, truncated or damaged, it
    is a PipelineError naming the file (Parquet, NumPy and CSV readers raise ValueError,
    OSError or EOFError with messages that do not), not a traceback."""
    path = require(path, what)
    try:
        return read(path)
    except (ValueError, OSError, EOFError) as exc:
        raise PipelineError(f"{what} {path} is damaged or unreadable ({exc}); delete it and "
                            "run the stage that writes it again (dvc repro)") from None


def file_sha256(path: str | Path) -> str:
    """The file's sha256, hex (read in chunks: archives of hundreds of MB, model files)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
