"""Few-label probe: is a *frozen* language-model encoder a better start than fine-tuning?

The encoder of a pretrained LM (``pretrain`` stage checkpoint) reads the same labeled
sample the train stage uses (``classifier.train_examples`` reviews drawn with
``runtime.seed``) and the valid split; its states are pooled as the classifier pools them
([last, max, mean] over the real tokens, up to ``classifier.max_len``), and a logistic
regression (scaled features, C chosen by 5-fold cross-validation on the sample) is fitted
on each pooling. Prints valid accuracy per pooling. One-off exploration, not a stage:

    python docs/experiments/few_label_probe.py --params P --lm models/lm.pt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from pipeline.batching import Corpus, classifier_batches
from pipeline.config import load_params
from pipeline.models import RNNClassifier, RNNEncoder, load_checkpoint


@torch.no_grad()
def pooled_states(encoder: RNNEncoder, corpus: Corpus, max_len: int) -> np.ndarray:
    """[N, 3 * hidden]: last state, max-pool and mean-pool over each review's real tokens,
    as the classifier pools them (its concat pooling, with no head)."""
    pooling = RNNClassifier(encoder.config, n_classes=2, pooling="concat")
    pooling.encoder, pooling.head = encoder, nn.Identity()
    pooling.eval()
    out = np.zeros((len(corpus), 3 * encoder.config.hidden), np.float32)
    for indices, (tokens, lengths, _) in classifier_batches(corpus, 128, max_len, None):
        out[indices] = pooling(tokens, lengths).numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--lm", default="models/lm.pt")
    parser.add_argument("--data", type=Path, default=Path("data/vocab"))
    args = parser.parse_args()
    params = load_params(args.params)
    lm, _ = load_checkpoint(Path(args.lm), expect_kind="language_model")
    encoder = lm.encoder.eval()
    train = Corpus.load(args.data, "train").labeled_sample(params.classifier.train_examples,
                                                          params.runtime.seed)
    valid = Corpus.load(args.data, "valid")
    started = time.perf_counter()
    x_train = pooled_states(encoder, train, params.classifier.max_len)
    x_valid = pooled_states(encoder, valid, params.classifier.max_len)
    print(f"pooled states of {len(train)} + {len(valid)} reviews in "
          f"{time.perf_counter() - started:.1f} s")
    width = encoder.config.hidden
    for name, columns in [("concat", slice(None)), ("last", slice(0, width)),
                          ("max-pool", slice(width, 2 * width)),
                          ("mean-pool", slice(2 * width, None))]:
        probe = make_pipeline(StandardScaler(), LogisticRegressionCV(
            Cs=10, cv=5, max_iter=2000, scoring="accuracy", l1_ratios=(0.0,),
            use_legacy_attributes=False))
        probe.fit(x_train[:, columns], train.labels)
        accuracy = float((probe.predict(x_valid[:, columns]) == valid.labels).mean())
        print(f"{name}: valid accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
