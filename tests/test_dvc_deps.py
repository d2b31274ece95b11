"""Every module a stage runs is one of its deps in dvc.yaml: otherwise a change to it (say,
the special tokens in text.py) would leave DVC reusing outputs the new code would not
produce. The imports are followed through the package, those made inside functions too.
A few modules are left out on purpose, as they do not change what a stage computes."""

from __future__ import annotations

import ast
import re

import yaml

from tests.conftest import REPO

# error messages, atomic writes, report key names, MLflow logging, wall-time records, where
# the user's repository is, and the params schema (the params a stage reads are deps of
# their own, under `params:`)
NOT_DEPS = {"errors", "io", "artifacts", "tracking", "timing", "workspace", "config"}


def imported_modules(module: str) -> set[str]:
    """Modules of the package that ``module`` imports (at any depth of its code)."""
    tree = ast.parse((REPO / f"{module.replace('.', '/')}.py").read_text(encoding="utf-8"))
    # `if TYPE_CHECKING:` imports are for annotations only: they never run
    for block in ast.walk(tree):
        if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING"):
            block.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "pipeline":
            found |= {f"pipeline.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pipeline.")}
    return {m for m in found if (REPO / f"{m.replace('.', '/')}.py").is_file()}


def runs(module: str) -> set[str]:
    """``module`` and everything it imports from the package, transitively."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += imported_modules(current)
    return seen


def test_imports_are_followed_through_the_package() -> None:
    # the LM stage reaches text.py only through batching / models: the walk must find it
    assert "pipeline.text" in runs("pipeline.stages.pretrain")
    assert "pipeline.ngrams" in runs("pipeline.stages.evaluate")  # imported inside a function
    # tasks.py names training.py's Backward type under TYPE_CHECKING only: evaluate does
    # not run the training loop
    assert "pipeline.training" not in runs("pipeline.stages.evaluate")
    assert "pipeline.training" in runs("pipeline.stages.train")


def test_every_module_a_stage_runs_is_a_declared_dependency() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    undeclared = {}
    for name, stage in stages.items():
        stage = stage.get("do", stage)  # a foreach stage's template
        command = re.search(r"python -m (pipeline\.stages\.\w+)", stage["cmd"])
        assert command, f"{name}: not a pipeline stage command"
        needed = {f"{m.replace('.', '/')}.py" for m in runs(command.group(1))
                  if m.split(".")[-1] not in NOT_DEPS}
        if missing := sorted(needed - set(stage["deps"])):
            undeclared[name] = missing
    assert undeclared == {}
