"""Models a user can use: raw review text in, a label and class probabilities out.

* :class:`TextClassifier` — a trained classifier checkpoint, its vocabulary and the
  tokenizer settings; the one prediction path. ``python -m pipeline.predict``, the
  MLflow model, ``mlflow models predict`` and ``mlflow models serve`` all go through it,
  so text is cleaned, tokenized and encoded exactly as the training stages did.
* :class:`ReviewClassifierModel` — the MLflow pyfunc wrapper. Its artifacts are plain
  files (checkpoint dict, ``vocab.json``, tokenizer settings) and the ``pipeline``
  package travels with it as code, so no module is pickled and it loads anywhere.
* :func:`log_classifier_model` — logs it from a training run (``train`` stage).

The model registry lives in :mod:`pipeline.registry`.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from torch import nn

from pipeline.batching import Corpus
from pipeline.errors import PipelineError
from pipeline.io import read_json
from pipeline.models import load_checkpoint
from pipeline.tasks import predict_proba
from pipeline.text import Vocab, clean_text, tokenize

PACKAGE_DIR = Path(__file__).resolve().parent
MODEL_NAME = "model"  # the logged model's name in each training run
INPUT_EXAMPLE = pd.DataFrame({"text": [
    "One of the best films I have seen this year: moving, funny and beautifully shot.",
    "Dull, far too long, and the ending makes no sense. Avoid.",
]})
ENTRY_SCRIPT = """\
from mlflow.models import set_model

from pipeline.serving import ReviewClassifierModel

set_model(ReviewClassifierModel())
"""
# Reading a long text's start and end only: generous characters per token (English
# averages ~5 with the space), and tokens next to a cut that may differ from the whole
# text's (spaCy's special cases can look across one space), left out of what is kept.
CHARS_PER_TOKEN = 16
CUT_MARGIN = 16
# what the MLflow model needs at load time (the code itself travels with it)
REQUIREMENTS = ("mlflow", "torch", "spacy", "numpy", "pandas", "pydantic", "pyyaml")


# ---------------------------------------------------------------- prediction


@dataclass
class TextClassifier:
    """A classifier with everything needed to turn raw text into its input ids."""

    model: nn.Module
    vocab: Vocab
    label_names: list[str]
    max_len: int | None  # tokens read per text (None: whole, BPT3C)
    lowercase: bool
    batch_size: int = 64

    @classmethod
    def from_files(cls, checkpoint: str | Path, vocab_path: str | Path,
                   lowercase: bool) -> TextClassifier:
        """Load a ``train`` stage checkpoint and the vocabulary it was trained with."""
        itos = read_json(vocab_path)
        if not isinstance(itos, dict) or not isinstance(itos.get("itos"), list):
            raise PipelineError(f"{vocab_path} is not a vocabulary (expected {{'itos': [...]}})")
        vocab = Vocab(tuple(itos["itos"]))
        model, blob = load_checkpoint(Path(checkpoint), None, len(vocab), vocab.sha256)
        if "label_names" not in blob or "max_len" not in blob:
            raise PipelineError(f"{checkpoint} holds a {blob['kind']!r} model, not a classifier "
                                "(use models/<variant>.pt)")
        model.eval()
        max_len = None if blob["max_len"] is None else int(blob["max_len"])
        return cls(model, vocab, [str(n) for n in blob["label_names"]], max_len, lowercase)

    def _ids(self, texts: list[str]) -> list[np.ndarray]:
        return [self.vocab.encode(tokens)
                for batch in tokenize(texts, lowercase=self.lowercase, workers=1)
                for tokens in batch]

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids of cleaned texts. With ``max_len`` the classifier reads only a text's
        first quarter and last three quarters of ``max_len`` tokens (batching.truncate), so
        of a far longer text only its start and end are tokenized, cut at spaces: the same
        ids, without spending a minute on a megabyte-long request."""
        if self.max_len is None:
            return self._ids(texts)
        head = self.max_len // 4
        tail = self.max_len - head
        encoded: list[np.ndarray | None] = [None] * len(texts)
        todo = list(range(len(texts)))
        chars = (self.max_len + 2 * CUT_MARGIN) * CHARS_PER_TOKEN
        while todo:
            cuts = {i: (texts[i].rfind(" ", 0, chars), texts[i].find(" ", len(texts[i]) - chars))
                    for i in todo if len(texts[i]) > 2 * chars}
            cuts = {i: cut for i, cut in cuts.items() if min(cut) > 0}  # else: no space to cut
            whole = [i for i in todo if i not in cuts]
            for i, ids in zip(whole, self._ids([texts[i] for i in whole]), strict=True):
                encoded[i] = ids
            long = list(cuts)
            pieces = self._ids([texts[i][:cuts[i][0]] for i in long]
                               + [texts[i][cuts[i][1] + 1:] for i in long])
            todo = []
            for k, i in enumerate(long):
                start, end = pieces[k], pieces[len(long) + k]
                if len(start) >= head + CUT_MARGIN and len(end) >= tail + CUT_MARGIN:
                    encoded[i] = np.concatenate([start[:head], end[len(end) - tail:]])
                else:  # too few tokens in that many characters: read more of the text
                    todo.append(i)
            chars *= 4
        assert all(ids is not None for ids in encoded)
        return encoded  # type: ignore[return-value]

    def columns(self) -> list[str]:
        return ["label", "probability", *[f"prob_{name}" for name in self.label_names]]

    def predict(self, texts: Sequence[str]) -> pd.DataFrame:
        """One row per text: ``label``, ``probability`` (of that label), ``prob_<label>``."""
        if len(texts) == 0:
            return pd.DataFrame({c: pd.Series(dtype=object if c == "label" else np.float64)
                                 for c in self.columns()})
        encoded = self.encode([clean_text(text) for text in texts])
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(ids) for ids in encoded], out=offsets[1:])
        corpus = Corpus(np.concatenate(encoded).astype(np.int32), offsets, None)
        probs = predict_proba(self.model, corpus, self.batch_size, self.max_len,
                              torch.device("cpu")).astype(np.float64)
        best = probs.argmax(axis=1)
        frame = pd.DataFrame({"label": np.asarray(self.label_names, dtype=object)[best],
                              "probability": probs[np.arange(len(best)), best]})
        for i, name in enumerate(self.label_names):
            frame[f"prob_{name}"] = probs[:, i]
        return frame


def as_texts(model_input: Any) -> list[str]:
    """The review texts of a DataFrame (``text`` column), Series, list or single string."""
    if isinstance(model_input, pd.DataFrame):
        if "text" not in model_input.columns:
            raise PipelineError(f"input has no 'text' column (columns: {list(model_input)})")
        model_input = model_input["text"]
    elif isinstance(model_input, dict) and "text" in model_input:
        model_input = model_input["text"]
    if isinstance(model_input, str):
        model_input = [model_input]
    texts = []
    for value in (model_input.tolist() if hasattr(model_input, "tolist") else model_input):
        if isinstance(value, list | tuple | np.ndarray):  # pyfunc turns {"text": [...]} into
            texts.extend(as_texts(list(value)))         # one row holding the whole list
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            texts.append("")  # a missing cell (empty CSV field) is an empty review, not "nan"
        else:
            texts.append(str(value))
    return texts


class ReviewClassifierModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: a DataFrame (or dict) with a ``text`` column -> predictions.

    Logged as "models from code" (a three-line script that imports this class), so
    nothing is pickled: :meth:`load_context` rebuilds the network from the checkpoint's
    config and weights (``weights_only=True``).
    """

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        settings = read_json(context.artifacts["tokenizer"])
        self.classifier = TextClassifier.from_files(
            context.artifacts["checkpoint"], context.artifacts["vocab"], settings["lowercase"])

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.classifier.predict(as_texts(model_input))


# ---------------------------------------------------------------- logging


def requirements() -> list[str]:
    """Pinned to this environment, without running MLflow's slow import-capturing inference."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def signature(label_names: list[str]) -> mlflow.models.ModelSignature:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    outputs = [ColSpec("string", "label"), ColSpec("double", "probability"),
               *[ColSpec("double", f"prob_{name}") for name in label_names]]
    return ModelSignature(inputs=Schema([ColSpec("string", "text")]), outputs=Schema(outputs))


def log_classifier_model(variant: str, checkpoint_path: str | Path, vocab_path: str | Path,
                         lowercase: bool) -> str:
    """Log ``variant`` as an MLflow pyfunc model in the active run; return its model URI."""
    classifier = TextClassifier.from_files(checkpoint_path, vocab_path, lowercase)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Path(tmp) / "tokenizer.json"
        settings.write_text(json.dumps({"lowercase": lowercase, "tokenizer": "spacy.blank('en')",
                                        "spacy": version("spacy")}, indent=2))
        # a clean copy of the package (no __pycache__): imported from the model at load time
        code = Path(tmp) / "pipeline"
        shutil.copytree(PACKAGE_DIR, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        # "models from code": the model is built by this script at load time, never unpickled
        entry = Path(tmp) / "review_classifier.py"
        entry.write_text(ENTRY_SCRIPT)
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(entry),
            artifacts={"checkpoint": str(checkpoint_path), "vocab": str(vocab_path),
                       "tokenizer": str(settings)},
            code_paths=[str(code)],
            signature=signature(classifier.label_names),
            input_example=INPUT_EXAMPLE,
            pip_requirements=requirements(),
            tags={"variant": variant},
        )
    return info.model_uri
