"""Stages import shared modules, never each other: one stage's module would otherwise load
another's imports (train once loaded scikit-learn through pretrain -> vocab -> prepare),
and a change to one stage's file would silently change another stage that DVC does not
know depends on it. The exceptions: ensemble and self_training reuse evaluate's scoring,
and dvc.yaml lists evaluate.py among their deps."""

from __future__ import annotations

import ast

import yaml

from tests.conftest import REPO

ALLOWED = {("ensemble", "evaluate"), ("self_training", "evaluate")}


def stage_imports(stage: str) -> set[str]:
    tree = ast.parse((REPO / "pipeline" / "stages" / f"{stage}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                 else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        found |= {n.split(".")[2] for n in names if n.startswith("pipeline.stages.")}
    return found


def test_no_stage_imports_another_except_evaluates_scoring() -> None:
    stages = sorted(p.stem for p in (REPO / "pipeline" / "stages").glob("*.py")
                    if p.stem != "__init__")
    imports = {(stage, other) for stage in stages for other in stage_imports(stage)}
    assert imports == ALLOWED


def test_the_allowed_import_is_a_declared_dependency() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage, other in ALLOWED:
        declared = stages[stage].get("do", stages[stage])  # a foreach stage's template
        assert f"pipeline/stages/{other}.py" in declared["deps"]
