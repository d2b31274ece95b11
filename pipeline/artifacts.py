"""What the stages hand each other besides arrays and models: the split names, and the keys
a later stage reads from each report. Stages import these from here, not from each other,
so that one stage's module never pulls in another's imports."""

from __future__ import annotations

SPLITS = ("train", "valid", "test", "unlabeled")  # prepare's tables, tokenize's, vocab's arrays
# data/vocab/info.json
VOCAB_INFO_KEYS = ("vocab_size", "vocab_sha256", "splits", "label_names", "dataset")
LM_REPORT_KEYS = ("valid_perplexity", "epochs", "tokens", "train_seconds")  # reports/pretrain*.json
# reports/train/<variant>.json
TRAIN_SUMMARY_KEYS = ("train_seconds", "valid_accuracy", "train_examples", "mlflow_run_id")
