"""The MLflow model registry: the best classifier of each run becomes a new version, and
the alias (``champion``) moves to it only when it beats the current holder on the same
test set. Kept apart from :mod:`pipeline.serving` so registry changes retrain nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow

from pipeline.config import Params
from pipeline.errors import PipelineError
from pipeline.serving import MODEL_NAME


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    variant: str
    test_accuracy: float
    alias: str
    alias_moved: bool
    previous: str | None  # version that held the alias before, if any


def registered_name(params: Params) -> str:
    return params.registry.model_name or f"{params.experiment_name}-classifier"


def logged_model_uri(client: mlflow.MlflowClient, run_id: str, variant: str) -> str:
    """``models:/<id>`` of the model :func:`log_classifier_model` logged in ``run_id``."""
    try:
        experiment = client.get_run(run_id).info.experiment_id
    except Exception as exc:
        raise PipelineError(
            f"the training run {run_id} of {variant} is not in the tracking store "
            f"{mlflow.get_tracking_uri()} ({exc}): retrain it (dvc repro -f train_{variant}) "
            "or set registry.enabled: false") from None
    found = client.search_logged_models(
        [experiment], filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME}'",
        max_results=1)
    if not found:
        raise PipelineError(
            f"the training run {run_id} of {variant} logged no model: retrain it "
            f"(dvc repro -f train_{variant}) or set registry.enabled: false")
    return f"models:/{found[0].model_id}"


def register_best(params: Params, sources: dict[str, str], test_accuracy: dict[str, float],
                  test_set: str = "") -> Registration | None:
    """Register the variant with the highest test accuracy as a new version; move the alias
    to it only if it beats the current holder's ``test_accuracy`` tag on the same
    ``test_set`` (no holder: it does). A quick run on a capped test set never takes the
    alias from a full run: accuracies on different test sets do not compare.

    ``sources`` maps each variant to its training run id. A manually set alias on a version
    without that tag is left alone: there is nothing to compare against.
    """
    registry = params.registry
    if not registry.enabled:
        return None
    from mlflow import MlflowClient

    client = MlflowClient()
    variant = max(test_accuracy, key=lambda v: test_accuracy[v])
    accuracy = float(test_accuracy[variant])
    name = registered_name(params)
    uri = logged_model_uri(client, sources[variant], variant)
    new = mlflow.register_model(uri, name, tags={
        "test_accuracy": repr(accuracy), "variant": variant, "source_run_id": sources[variant],
        "test_set": test_set})

    holder = client.get_registered_model(name).aliases.get(registry.alias)
    previous = None if holder is None else client.get_model_version(name, holder)
    held = None if previous is None else previous.tags.get("test_accuracy")
    comparable = previous is not None and previous.tags.get("test_set", "") == test_set
    moved = previous is None or (comparable and held is not None and accuracy > float(held))
    if moved:
        client.set_registered_model_alias(name, registry.alias, new.version)
    verdict = (f"alias '{registry.alias}' -> version {new.version}" if moved
               else f"alias '{registry.alias}' stays on version {holder} "
                    f"(test accuracy {held or 'unknown'}"
                    + ("" if comparable else f", on another test set than {test_set!r}") + ")")
    print(f"[registry] {name} version {new.version}: {variant}, test accuracy "
          f"{accuracy:.4f}; {verdict}")
    if mlflow.active_run() is not None:
        mlflow.set_tags({"registry.model": name, "registry.version": new.version,
                         "registry.alias_moved": str(moved).lower()})
    return Registration(name, str(new.version), variant, accuracy, registry.alias, moved,
                        None if holder is None else str(holder))
