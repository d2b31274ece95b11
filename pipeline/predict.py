"""Classify raw reviews with a trained model; prints label, probability and text per input.

    python -m pipeline.predict "A wonderful film." "Dull and far too long."
    python -m pipeline.predict --file reviews.txt          # one review per line
    python -m pipeline.predict --file reviews.csv          # a `text` column
    python -m pipeline.predict --model models/rnn_scratch.pt "..."
    python -m pipeline.predict --model-uri models:/rnn-pretrain-imdb-classifier@champion "..."

Both ways go through :class:`pipeline.serving.TextClassifier`, the same code the MLflow
model runs, so a local checkpoint and its logged model give the same probabilities.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from pipeline.errors import PipelineError


def read_texts(path: Path) -> list[str]:
    """Reviews from a CSV (``text`` column) or a text file (one review per non-blank line)."""
    from pipeline.serving import as_texts

    if not path.is_file():
        raise PipelineError(f"input file not found: {path}")
    if path.suffix.lower() == ".csv":
        try:
            frame = pd.read_csv(path, dtype={"text": str}, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise PipelineError(f"{path} is not a readable CSV file: {exc}") from None
        return as_texts(frame)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path} is not UTF-8 text: {exc}") from None
    return [line for line in lines if line.strip()]


def lowercase_setting(params_path: Path | None) -> bool:
    """``tokenize.lowercase`` of params.yaml: the models were trained on text cased this way.
    Without ``--params``, ./params.yaml if there is one, else lowercase (the default); a
    ``--params`` file that does not exist is an error, not quietly the default."""
    from pipeline.config import load_params

    if params_path is None:
        params_path = Path("params.yaml")
        if not params_path.is_file():
            return True
    return load_params(params_path).tokenize.lowercase


def predict(texts: list[str], args: argparse.Namespace) -> pd.DataFrame:
    if args.model_uri:
        import mlflow

        from pipeline import tracking

        if args.model_uri.split(":", 1)[0] in ("models", "runs"):
            tracking.connect(existing=True)  # registry / run URIs resolve through it
        try:
            model = mlflow.pyfunc.load_model(args.model_uri)
        except Exception as exc:
            raise PipelineError(f"could not load MLflow model {args.model_uri}: "
                                f"{str(exc).splitlines()[0] if str(exc) else exc}") from None
        return model.predict(pd.DataFrame({"text": texts}))
    from pipeline.serving import TextClassifier

    classifier = TextClassifier.from_files(args.model, args.vocab,
                                           lowercase_setting(args.params))
    return classifier.predict(texts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("texts", nargs="*", help="reviews to classify")
    parser.add_argument("--file", type=Path, help="reviews.txt (one per line) or reviews.csv")
    parser.add_argument("--model", default="models/rnn_pretrained.pt",
                        help="classifier checkpoint written by the train stage")
    parser.add_argument("--vocab", default="data/vocab/vocab.json",
                        help="the vocabulary the checkpoint was trained with")
    parser.add_argument("--params", type=Path,
                        help="read tokenize.lowercase from here (default: ./params.yaml if "
                        "present, else lowercase)")
    parser.add_argument("--model-uri", help="an MLflow model instead of --model, e.g. "
                        "models:/<name>@champion or runs:/<run id>/model")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep stdout clean
    try:
        texts = list(args.texts) + (read_texts(args.file) if args.file else [])
        if not texts:
            parser.error("give review texts as arguments or --file")
        predictions = predict(texts, args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for number, text in enumerate(texts, start=1):
        if not text.strip():  # the model still answers: its guess for no text at all
            print(f"warning: review {number} is empty; its prediction says nothing about it",
                  file=sys.stderr)
    for text, row in zip(texts, predictions.itertuples(index=False), strict=True):
        snippet = " ".join(text.split())
        snippet = snippet if len(snippet) <= 70 else snippet[:67] + "..."
        print(f"{row.label}\t{row.probability:.4f}\t{snippet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
