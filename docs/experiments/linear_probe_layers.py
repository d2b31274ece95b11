"""Linear probe per layer: how much sentiment can a logistic regression read from a *frozen*
language model, layer by layer, with all labels or a few?

The encoder of a pretrained LM (``pretrain`` stage checkpoint) reads every train, valid and
test review (up to ``--max-len`` tokens, kept as the classifier keeps them), eval mode, bf16
autocast where the CPU has it. Features per review: the mean of its word embeddings, and for
each LSTM layer its states pooled as the classifier pools them ([last, max, mean] over the
real tokens). For each feature set and number of labeled reviews (a stratified sample drawn
with ``--seed``), a logistic regression on standardized features, C chosen on valid; prints
valid and test accuracy. One-off exploration, not a stage; run from a run's directory:

    python docs/experiments/linear_probe_layers.py --lm models/lm.pt --data data/vocab \
        --labels 1000,all --features emb,layer1,layer2,emb+layer1+layer2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipeline.batching import Corpus, classifier_batches
from pipeline.models import load_checkpoint, masked_pooling
from pipeline.runtime import cpu_has_bf16
from pipeline.sampling import stratified_rows

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)


@torch.no_grad()
def layer_features(encoder: torch.nn.Module, corpus: Corpus, max_len: int
                   ) -> dict[str, np.ndarray]:
    """{"emb": [N, E], "layer1": [N, 3H], ...} for every review of ``corpus``."""
    out: dict[str, np.ndarray] = {}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_has_bf16())
    for indices, (tokens, lengths, _) in classifier_batches(corpus, 256, max_len, None):
        with autocast:
            x = encoder.embed(tokens)
            _, _, total = masked_pooling(x, lengths)
            pooled = {"emb": total / lengths[:, None].to(total.dtype)}
            for layer, rnn in enumerate(encoder.rnns, start=1):
                x, _ = rnn(x)
                last, max_pool, total = masked_pooling(x, lengths)
                pooled[f"layer{layer}"] = torch.cat(
                    [last, max_pool, total / lengths[:, None].to(total.dtype)], dim=-1)
        for name, values in pooled.items():
            if name not in out:
                out[name] = np.zeros((len(corpus), values.shape[1]), dtype=np.float32)
            out[name][indices] = values.float().numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", type=Path, default=Path("models/lm.pt"))
    parser.add_argument("--data", type=Path, default=Path("data/vocab"))
    parser.add_argument("--max-len", type=int, default=800)
    parser.add_argument("--labels", default="1000,all", help="comma-separated counts or 'all'")
    parser.add_argument("--features", default="emb,layer1,layer2,emb+layer1+layer2",
                        help="comma-separated feature sets; '+' joins features")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lm, _ = load_checkpoint(args.lm, "language_model")
    encoder = lm.encoder.eval()
    splits = {}
    for split in ("train", "valid", "test"):
        corpus = Corpus.load(args.data, split)
        started = time.perf_counter()
        splits[split] = (layer_features(encoder, corpus, args.max_len), corpus.labels)
        print(f"{split}: {len(corpus)} reviews, {time.perf_counter() - started:.0f} s",
              flush=True)

    train_labels = splits["train"][1]
    for feature_set in args.features.split(","):
        names = feature_set.split("+")
        x = {split: np.concatenate([feats[n] for n in names], axis=1)
             for split, (feats, _) in splits.items()}
        scaler = StandardScaler().fit(x["train"])
        x = {split: scaler.transform(values) for split, values in x.items()}
        for count in args.labels.split(","):
            rows = (np.arange(len(train_labels)) if count == "all"
                    else stratified_rows(train_labels, int(count), args.seed, "--labels"))
            best = None
            for c in C_GRID:
                model = LogisticRegression(C=c, max_iter=3000)
                model.fit(x["train"][rows], train_labels[rows])
                valid = model.score(x["valid"], splits["valid"][1])
                if best is None or valid > best[0]:
                    best = (valid, c, model.score(x["test"], splits["test"][1]))
            valid, c, test = best
            print(f"{feature_set:>24} labels {count:>5}: valid {valid:.2%}  test {test:.2%}  "
                  f"(C {c:g})", flush=True)


if __name__ == "__main__":
    main()
